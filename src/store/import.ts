import { blobSource } from '../engine/weights.ts';
import type { ChatTemplateId } from './catalog.ts';
import type { ModelRecord } from './db.ts';
import { cancelled, StoreError } from './errors.ts';
import { FileCheck } from './file-check.ts';
import { randomId } from './ids.ts';
import { createSha256, toHex } from './sha256.ts';
import type { StoreContext } from './tx.ts';
import { fileChunks, runTx } from './tx.ts';
import { holdingLock } from './lock.ts';
import { importLockName } from './sweep.ts';
import { checkModel, MAX_CONFIG_BYTES } from './validate.ts';

// Copies a config.json and a model.safetensors the user picked into the store. Both are checked
// by the engine's parser before a single byte is stored, and every value the model uses is
// checked for NaN and infinity as the copy goes (FileCheck); a copy that fails half-way (bad
// value, full disk, cancel) is removed again, and one whose tab died is swept on the next open
// (see sweep.ts).

export interface ImportOptions {
  template?: ChatTemplateId;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

export async function importModel(ctx: StoreContext, config: Blob, weights: Blob, name: string, opts: ImportOptions = {}): Promise<ModelRecord> {
  if (config.size > MAX_CONFIG_BYTES) {
    throw new StoreError('invalid-model', `Not a usable GPT-2 model: config.json has ${config.size} bytes; a GPT-2 config.json has a few hundred.`);
  }
  const configText = await config.text();
  await checkModel(configText, blobSource(weights));
  const fileId = randomId();
  // Other tabs sweep the chunks of an import whose lock nobody holds (see sweep.ts).
  return holdingLock(importLockName(ctx, fileId), () => copyIn(ctx, fileId, configText, weights, name, opts));
}

async function copyIn(ctx: StoreContext, fileId: string, configText: string, weights: Blob, name: string, opts: ImportOptions): Promise<ModelRecord> {
  const chunkBytes = ctx.chunkBytes;
  await runTx(ctx, ['imports'], 'readwrite', async (tx) => {
    await tx.store.put({ fileId, name, updatedAt: ctx.now() });
  });
  try {
    const sha256 = await copyChunks(ctx, fileId, name, weights, configText, opts);
    const now = ctx.now();
    const model: ModelRecord = {
      id: `import:${fileId}`,
      name: name.trim() || 'Imported model',
      template: opts.template ?? 'transcript',
      origin: 'import',
      sourceUrl: null,
      configText,
      fileId,
      size: weights.size,
      chunkBytes,
      sha256,
      addedAt: now,
      lastUsedAt: null,
    };
    await runTx(ctx, ['models', 'imports'], 'readwrite', async (tx) => {
      await tx.objectStore('imports').delete(fileId);
      await tx.objectStore('models').put(model);
    });
    return model;
  } catch (e) {
    await removeImport(ctx, fileId).catch(() => undefined);
    throw e;
  }
}

async function copyChunks(ctx: StoreContext, fileId: string, name: string, weights: Blob, configText: string, opts: ImportOptions): Promise<string> {
  const hasher = createSha256();
  const check = new FileCheck(configText);
  const { chunkBytes } = ctx;
  for (let at = 0, index = 0; at < weights.size; at += chunkBytes, index++) {
    if (opts.signal?.aborted) throw cancelled('The import was cancelled.');
    const buffer = await weights.slice(at, at + chunkBytes).arrayBuffer();
    hasher.update(new Uint8Array(buffer));
    check.feed(new Uint8Array(buffer));
    await runTx(ctx, ['imports', 'chunks'], 'readwrite', async (tx) => {
      await tx.objectStore('chunks').put(buffer, [fileId, index]);
      await tx.objectStore('imports').put({ fileId, name, updatedAt: ctx.now() });
    });
    opts.onProgress?.(Math.min(weights.size, at + chunkBytes), weights.size);
  }
  return toHex(hasher.digest());
}

/** Deletes the chunks and staging record of an unfinished import. */
export function removeImport(ctx: StoreContext, fileId: string): Promise<void> {
  return runTx(ctx, ['imports', 'chunks'], 'readwrite', async (tx) => {
    await tx.objectStore('chunks').delete(fileChunks(fileId));
    await tx.objectStore('imports').delete(fileId);
  });
}
