import { describe, expect, it } from 'vitest';
import type { ModelStoreApi } from '../../src/app/models.ts';
import { createModelsState, formatBytes, ModelManager, pickModelFiles } from '../../src/app/models.ts';
import type { EngineApi, LoadRequest, ModelInfo } from '../../src/engine/api.ts';
import type { CatalogEntry, DownloadProgress, StoredModel } from '../../src/store/index.ts';

const config = { nLayer: 1, nHead: 1, nEmbd: 4, nPositions: 256, vocabSize: 50257, layerNormEpsilon: 1e-5, eosTokenId: 50256 };
const bundled: CatalogEntry = { id: 'shakespeare', name: 'Shakespeare (bundled)', description: '', origin: 'bundled', baseUrl: 'models/shakespeare/', parameters: null, approxBytes: 15e6, template: 'play-script' };
const big: CatalogEntry = { id: 'hf:gpt2', name: 'gpt2', description: '', origin: 'huggingface', baseUrl: 'https://huggingface.co/gpt2/resolve/main/', parameters: '124M', approxBytes: 548e6, template: 'transcript' };

function stored(e: CatalogEntry): StoredModel {
  return { id: e.id, name: e.name, template: e.template, origin: e.origin, sourceUrl: null, size: e.approxBytes ?? 0, sha256: '', config, addedAt: 1, lastUsedAt: null };
}

class FakeStore implements ModelStoreApi {
  models: StoredModel[] = [];
  gate: Promise<void> = Promise.resolve();
  readonly catalog = [bundled, big];
  customModel(): CatalogEntry {
    throw new Error('Models can only be downloaded over https (got http://x).');
  }
  async list() {
    return [...this.models];
  }
  async pendingDownloads() {
    return [];
  }
  async planDownload(m: CatalogEntry | string) {
    const e = typeof m === 'string' ? this.catalog.find((c) => c.id === m)! : m;
    return { modelId: e.id, stored: false, bytes: e.approxBytes, bytesSource: 'server' as const, bytesStored: 0, bytesNeeded: e.approxBytes, freeBytes: 1e9, fits: true, persisted: false };
  }
  async download(m: CatalogEntry | string, opts: { signal?: AbortSignal; onProgress?: (p: DownloadProgress) => void } = {}) {
    const e = typeof m === 'string' ? this.catalog.find((c) => c.id === m)! : m;
    opts.onProgress?.({ modelId: e.id, phase: 'downloading', bytesDone: 5, bytesTotal: 10, percent: 50, bytesPerSecond: 1, secondsLeft: 5 });
    await Promise.race([
      this.gate,
      new Promise((_, reject) => opts.signal?.addEventListener('abort', () => reject(new Error('The download was cancelled; it can be resumed.')))),
    ]);
    const s = stored(e);
    this.models.push(s);
    return s;
  }
  async discard() {
    return true;
  }
  async importFiles(_c: Blob, w: Blob, name: string) {
    const s = { ...stored(bundled), id: 'import:1', name, origin: 'import' as const, size: w.size };
    this.models.push(s);
    return s;
  }
  async delete(id: string) {
    this.models = this.models.filter((m) => m.id !== id);
    return true;
  }
  async leftovers() {
    return { files: 0, bytes: 0 };
  }
  async clearLeftovers() {}
  async estimate() {
    return { usage: 1, quota: 2, free: 1, persisted: false };
  }
  async persist() {
    return true;
  }
}

class FakeEngine implements EngineApi {
  loads: LoadRequest[] = [];
  unloads = 0;
  async load(req: LoadRequest, onProgress?: (p: { phase: 'reading'; bytesRead: number; bytesTotal: number }) => void): Promise<ModelInfo> {
    this.loads.push(req);
    onProgress?.({ phase: 'reading', bytesRead: 1, bytesTotal: 2 });
    return { name: 'm', config, mode: { kind: 'pool', workers: 2, sync: 'atomics', sharedMemory: true }, loadMs: 1, weightBytes: 1 };
  }
  async generate(): Promise<never> {
    throw new Error('unused');
  }
  abort(): void {}
  async unload(): Promise<void> {
    this.unloads++;
  }
}

const memoryStorage = () => {
  const m = new Map<string, string>();
  return { getItem: (k: string) => m.get(k) ?? null, setItem: (k: string, v: string) => void m.set(k, v) };
};

describe('model manager', () => {
  it('fetches the bundled model into the store on the first run, and a send waits for it', async () => {
    const store = new FakeStore();
    let open!: () => void;
    store.gate = new Promise((r) => (open = r));
    const engine = new FakeEngine();
    const state = createModelsState();
    const mm = new ModelManager(state, store, engine, memoryStorage());
    await mm.init();
    expect(state.currentId).toBe('shakespeare');
    expect(state.downloads.shakespeare).toMatchObject({ percent: 50 });
    const loading = mm.ensureLoaded('shakespeare', 0);
    await new Promise((r) => setTimeout(r, 5));
    expect(state.loading?.phase).toBe('waiting-for-download');
    open();
    const info = await loading;
    expect(info.mode.kind).toBe('pool');
    expect(engine.loads).toEqual([{ location: { kind: 'stored', modelId: 'shakespeare' }, workers: 0 }]);
    expect(state.loaded?.modelId).toBe('shakespeare');
    expect(state.downloads).toEqual({});
    expect(state.stored.map((m) => m.id)).toEqual(['shakespeare']);
    // Same model and workers: no reload. Other workers: reload.
    await mm.ensureLoaded('shakespeare', 0);
    expect(engine.loads).toHaveLength(1);
    await mm.ensureLoaded('shakespeare', 2);
    expect(engine.loads).toHaveLength(2);
    expect(engine.unloads).toBe(1);
  });

  it('asks before large downloads, cancels, and refuses models that are not downloaded', async () => {
    const store = new FakeStore();
    store.models = [stored(bundled)];
    store.gate = new Promise(() => undefined);
    const state = createModelsState();
    const mm = new ModelManager(state, store, new FakeEngine(), memoryStorage());
    await mm.init();
    const plan = await mm.plan(big);
    expect(mm.needsConfirmation(plan)).toBe(true);
    expect(mm.needsConfirmation(await mm.plan(bundled))).toBe(false);
    const dl = mm.download(big);
    expect(state.downloads[big.id]).toBeDefined();
    mm.cancel(big.id);
    await expect(dl).rejects.toThrow(/cancelled/);
    expect(state.downloads[big.id]).toBeUndefined();
    expect(state.error).toBeNull();
    await expect(mm.ensureLoaded(big.id, 0)).rejects.toThrow(/not downloaded yet/);
  });

  it('imports picked files, deletes models, and unloads a deleted loaded model', async () => {
    const store = new FakeStore();
    store.models = [stored(bundled)];
    const engine = new FakeEngine();
    const state = createModelsState();
    const mm = new ModelManager(state, store, engine, memoryStorage());
    await mm.init();
    await expect(mm.importFiles([new File(['{}'], 'config.json')])).rejects.toThrow(/\.safetensors file is missing/);
    expect(state.error).toMatch(/missing/);
    const id = await mm.importFiles([new File(['{}'], 'config.json'), new File([new Uint8Array(10)], 'tiny-gpt2.safetensors')]);
    expect(state.stored.find((m) => m.id === id)?.name).toBe('tiny-gpt2');
    await mm.ensureLoaded('shakespeare', 0);
    await mm.remove('shakespeare');
    expect(engine.unloads).toBe(1);
    expect(state.loaded).toBeNull();
    expect(state.stored.map((m) => m.id)).toEqual([id]);
  });

  it('picks the two files of a model and formats sizes', () => {
    const files = [new File(['x'], 'model.safetensors'), new File(['{}'], 'config.json')];
    expect(pickModelFiles(files).name).toBe('Imported model');
    expect(() => pickModelFiles([])).toThrow(/config.json and a .safetensors file are missing/);
    expect(formatBytes(15_000_000)).toBe('15 MB');
    expect(formatBytes(1_520_000_000)).toBe('1.5 GB');
    expect(formatBytes(null)).toBe('?');
  });
});
