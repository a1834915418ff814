import type { GPT2Config } from '../engine/config.ts';
import { parseConfig } from '../engine/config.ts';
import type { ByteSource } from '../engine/weights.ts';
import type { ChatTemplateId, ModelOrigin } from './catalog.ts';
import { chunkSource } from './chunks.ts';
import type { DownloadRecord, ModelRecord } from './db.ts';
import { StoreError } from './errors.ts';
import type { StoreContext } from './tx.ts';
import { fileChunks, runTx } from './tx.ts';

// The stored models as the UI and the engine see them.

export interface StoredModel {
  id: string;
  name: string;
  template: ChatTemplateId;
  origin: ModelOrigin;
  sourceUrl: string | null;
  /** Bytes of model.safetensors. */
  size: number;
  sha256: string;
  config: GPT2Config;
  addedAt: number;
  lastUsedAt: number | null;
}

export interface PendingDownload {
  id: string;
  name: string;
  template: ChatTemplateId;
  origin: ModelOrigin;
  bytesStored: number;
  totalBytes: number | null;
  startedAt: number;
  updatedAt: number;
}

/** What the engine worker needs to load a stored model: pass `source` to loadWeights. */
export interface OpenedModel {
  id: string;
  name: string;
  config: GPT2Config;
  configText: string;
  template: ChatTemplateId;
  size: number;
  sha256: string;
  source: ByteSource;
}

export function describeModel(r: ModelRecord): StoredModel {
  const { id, name, template, origin, sourceUrl, size, sha256, addedAt, lastUsedAt } = r;
  return { id, name, template, origin, sourceUrl, size, sha256, config: parseConfig(r.configText), addedAt, lastUsedAt };
}

/** Most recently used (or added) first. */
export async function listModels(ctx: StoreContext): Promise<StoredModel[]> {
  const records = await runTx(ctx, ['models'], 'readonly', (tx) => tx.store.getAll());
  const recency = (m: ModelRecord): number => m.lastUsedAt ?? m.addedAt;
  return records.sort((a, b) => recency(b) - recency(a)).map(describeModel);
}

export async function listPending(ctx: StoreContext): Promise<PendingDownload[]> {
  const records = await runTx(ctx, ['downloads'], 'readonly', (tx) => tx.store.getAll());
  return records.map(({ id, name, template, origin, bytesStored, totalBytes, startedAt, updatedAt }: DownloadRecord) => ({
    id, name, template, origin, bytesStored, totalBytes, startedAt, updatedAt,
  }));
}

/** Deletes a model and its chunks in one transaction; false when there was no such model. */
export function deleteModel(ctx: StoreContext, id: string): Promise<boolean> {
  return runTx(ctx, ['models', 'chunks'], 'readwrite', async (tx) => {
    const rec = await tx.objectStore('models').get(id);
    if (!rec) return false;
    await tx.objectStore('chunks').delete(fileChunks(rec.fileId));
    await tx.objectStore('models').delete(id);
    return true;
  });
}

/** Opens a stored model for loading and marks it used now. */
export async function openModel(ctx: StoreContext, id: string): Promise<OpenedModel> {
  const rec = await runTx(ctx, ['models'], 'readwrite', async (tx) => {
    const found = await tx.store.get(id);
    if (found) await tx.store.put({ ...found, lastUsedAt: ctx.now() });
    return found;
  });
  if (!rec) throw new StoreError('not-found', `No stored model "${id}".`);
  const { name, configText, template, size, sha256, fileId, chunkBytes } = rec;
  const source = chunkSource(ctx, { fileId, size, chunkBytes });
  return { id, name, config: parseConfig(configText), configText, template, size, sha256, source };
}
