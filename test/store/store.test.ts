import { afterEach, describe, expect, it, vi } from 'vitest';
import { DB_VERSION } from '../../src/store/db.ts';
import type { StoreError } from '../../src/store/index.ts';
import { openStoredModel, ModelStore } from '../../src/store/index.ts';
import { withHeader } from '../helpers/model-bytes.ts';
import { CHUNK, DB, blob, harness, importTiny, quotaOnChunkPut, readAll, rejection, rowCounts, sha256, storedSha, tinyBytes, tinyConfigText } from './helpers.ts';

const TINY_SHA = sha256(tinyBytes());
const TINY_CHUNKS = Math.ceil(tinyBytes().length / CHUNK);

const configWith = (patch: Record<string, unknown>): string => JSON.stringify({ ...JSON.parse(tinyConfigText()), ...patch });

afterEach(() => {
  vi.restoreAllMocks();
});

describe('import', () => {
  it('stores a valid model, lists it and reads back identical bytes', async () => {
    let t = 1000;
    const store = await harness().open({ now: () => t });
    const m = await store.importFiles(blob(tinyConfigText()), blob(tinyBytes()), 'My tiny', { template: 'dialogpt' });
    expect(m).toMatchObject({ name: 'My tiny', template: 'dialogpt', origin: 'import', size: tinyBytes().length, sha256: TINY_SHA, addedAt: 1000, lastUsedAt: null });
    expect(m.config.nEmbd).toBe(64);
    expect(await store.list()).toEqual([m]);
    t = 2000;
    const opened = await store.openStoredModel(m.id);
    expect(opened).toMatchObject({ name: 'My tiny', template: 'dialogpt', configText: tinyConfigText() });
    expect(sha256(await readAll(opened.source))).toBe(TINY_SHA);
    expect((await store.list())[0].lastUsedAt).toBe(2000);
  });

  it.each([
    ['config that is not JSON', () => '{"n_layer": 2,', () => tinyBytes()],
    ['config of another architecture', () => configWith({ model_type: 'llama' }), () => tinyBytes()],
    ['config whose n_embd disagrees with the weights', () => configWith({ n_embd: 32 }), () => tinyBytes()],
    ['config with more layers than the weights', () => configWith({ n_layer: 3 }), () => tinyBytes()],
    ['weights with a flipped header byte', () => tinyConfigText(), () => flip(tinyBytes(), 8)],
    ['weights truncated by 1000 bytes', () => tinyConfigText(), () => tinyBytes().subarray(0, tinyBytes().length - 1000)],
    ['weights missing a tensor', () => tinyConfigText(), () => withHeader((h) => delete h['h.1.mlp.c_fc.bias'])],
    ['an empty weights file', () => tinyConfigText(), () => new Uint8Array(0)],
  ])('rejects %s before storing anything', async (_, config, weights) => {
    const h = harness();
    const store = await h.open();
    const keep = await importTiny(store, 'keep');
    const put = vi.spyOn(IDBObjectStore.prototype, 'put');
    const e = await rejection(store.importFiles(blob(config()), blob(weights()), 'bad'));
    expect(e.code).toBe('invalid-model');
    expect(put).not.toHaveBeenCalled();
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
    expect(await storedSha(store, keep)).toBe(TINY_SHA);
  });
});

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice();
  out[at] ^= 0xff;
  return out;
}

describe('import cancel', () => {
  it('removes what was copied so far', async () => {
    const h = harness();
    const store = await h.open();
    const keep = await importTiny(store, 'keep');
    const controller = new AbortController();
    const copied: number[] = [];
    const onProgress = (done: number): void => {
      copied.push(done);
      if (done >= 3 * CHUNK) controller.abort();
    };
    const e = await rejection(store.importFiles(blob(tinyConfigText()), blob(tinyBytes()), 'x', { signal: controller.signal, onProgress }));
    expect(e.code).toBe('cancelled');
    expect(copied).toEqual([CHUNK, 2 * CHUNK, 3 * CHUNK]);
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
    expect(await storedSha(store, keep)).toBe(TINY_SHA);
  });
});

describe('stored model source', () => {
  it('assembles any range from the chunks', async () => {
    const store = await harness().open();
    const id = await importTiny(store);
    const { source } = await store.openStoredModel(id);
    const file = tinyBytes();
    expect(source.size).toBe(file.length);
    // In this order, so the kept last chunk is reused, skipped, and not wrongly reused for the next one.
    const ranges: Array<[number, number]> = [
      [0, 8], [0, CHUNK], [CHUNK - 3, CHUNK + 5], [CHUNK + 7, CHUNK + 9], [CHUNK, 2 * CHUNK], [2 * CHUNK, 2 * CHUNK + 10],
      [3 * CHUNK, 3 * CHUNK + 1], [5, 3 * CHUNK + 17], [file.length - 10, file.length], [file.length - 10, file.length + 100],
      [100, 100], [0, 8],
    ];
    let seed = 12345;
    const random = (n: number): number => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    for (let i = 0; i < 40; i++) {
      const b = random(file.length);
      ranges.push([b, Math.min(file.length, b + random(3 * CHUNK))]);
    }
    for (const [b, e] of ranges) {
      const got = await source.read(b, e);
      expect(got.length, `[${b}, ${e})`).toBe(Math.max(0, Math.min(e, file.length) - b));
      expect(Buffer.from(got).equals(Buffer.from(file.subarray(b, e))), `[${b}, ${e})`).toBe(true);
    }
  });

  it('fetches only the chunks a read overlaps, and none again for the chunk it kept', async () => {
    const store = await harness().open();
    const id = await importTiny(store);
    const { source } = await store.openStoredModel(id);
    const getAll = vi.spyOn(IDBObjectStore.prototype, 'getAll');
    const fetched = (): Array<[number, number]> =>
      getAll.mock.calls.map(([range]) => [(range as IDBKeyRange).lower[1], (range as IDBKeyRange).upper[1]]);
    await source.read(CHUNK + 5, 3 * CHUNK + 5);
    await source.read(3 * CHUNK + 5, 3 * CHUNK + 9);
    await source.read(3 * CHUNK + 9, 4 * CHUNK + 1);
    expect(fetched()).toEqual([[1, 3], [4, 4]]);
  });

  it('reports missing chunks as a corrupt store rather than short data', async () => {
    const h = harness();
    const store = await h.open();
    const id = await importTiny(store);
    const { source } = await store.openStoredModel(id);
    await deleteRawChunk(h.factory, 3);
    expect((await rejection(source.read(3 * CHUNK - 10, 3 * CHUNK + 10))).code).toBe('corrupt');
  });
});

async function rawDb(factory: IDBFactory, version?: number): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = factory.open(DB, version);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function within<T>(ms: number, p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))]);
}

async function deleteRawChunk(factory: IDBFactory, index: number): Promise<void> {
  const db = await rawDb(factory);
  const tx = db.transaction('chunks', 'readwrite');
  const store = tx.objectStore('chunks');
  const keys = await new Promise<IDBValidKey[]>((r) => (store.getAllKeys().onsuccess = (e) => r((e.target as IDBRequest<IDBValidKey[]>).result)));
  store.delete(keys.find((k) => (k as [string, number])[1] === index)!);
  await new Promise((r) => (tx.oncomplete = r));
  db.close();
}

describe('delete', () => {
  it('removes the model and its chunks and nothing else', async () => {
    const h = harness();
    const store = await h.open();
    const a = await importTiny(store, 'a');
    const b = await importTiny(store, 'b');
    expect((await rowCounts(h.factory)).chunks).toBe(2 * TINY_CHUNKS);
    expect(await store.delete(a)).toBe(true);
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
    expect((await rejection(store.openStoredModel(a))).code).toBe('not-found');
    expect(await storedSha(store, b)).toBe(TINY_SHA);
    expect(await store.delete(a)).toBe(false);
  });

  it('is atomic: a failure half-way leaves the model whole', async () => {
    const h = harness();
    const store = await h.open();
    const id = await importTiny(store);
    const real = IDBObjectStore.prototype.delete;
    vi.spyOn(IDBObjectStore.prototype, 'delete').mockImplementation(function (this: IDBObjectStore, key: IDBValidKey | IDBKeyRange) {
      if (this.name === 'models') throw new DOMException('disk on fire', 'UnknownError');
      return real.call(this, key);
    });
    expect((await rejection(store.delete(id))).code).toBe('idb');
    vi.restoreAllMocks();
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
    expect(await storedSha(store, id)).toBe(TINY_SHA);
  });
});

describe('a full disk', () => {
  it.each(['throws', 'aborts'] as const)('fails an import with code quota and leaves the store intact (put %s)', async (how) => {
    const h = harness();
    const store = await h.open();
    const keep = await importTiny(store, 'keep');
    quotaOnChunkPut(3, how);
    const e = await rejection(importTiny(store, 'too much'));
    expect(e.code).toBe('quota');
    expect(e.message).toMatch(/storage space/);
    vi.restoreAllMocks();
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
    expect(await storedSha(store, keep)).toBe(TINY_SHA);
    expect((await store.list()).map((m) => m.id)).toEqual([keep]);
  });
});

describe('other tabs', () => {
  /** Opens every database one version higher: this tab plays a newer release of the app. */
  const newerRelease = (factory: IDBFactory): IDBFactory =>
    ({
      open: (name: string) => factory.open(name, DB_VERSION + 1),
      deleteDatabase: (name: string) => factory.deleteDatabase(name),
      cmp: (a: unknown, b: unknown) => factory.cmp(a, b),
      databases: () => factory.databases(),
    }) as IDBFactory;

  it("fails with 'blocked' while an old tab keeps the database open, and lets go of the late connection", async () => {
    const h = harness();
    const old = await rawDb(h.factory); // an old tab that ignores versionchange
    old.onversionchange = null;
    const e = await rejection(h.open({ indexedDB: newerRelease(h.factory) }));
    expect(e.code).toBe('blocked');
    old.close();
    // The pending upgrade now completes; the store must close it at once, or deletion would block.
    await new Promise((r) => setTimeout(r, 20));
    const outcome = await new Promise<string>((resolve) => {
      const del = h.factory.deleteDatabase(DB);
      del.onblocked = () => resolve('blocked');
      del.onsuccess = () => resolve('deleted');
      del.onerror = () => resolve(String(del.error));
    });
    expect(outcome).toBe('deleted');
  });

  it('closes when a newer tab upgrades, tells the user, and fails later calls clearly', async () => {
    const h = harness();
    const reasons: StoreError[] = [];
    const store = await h.open({ onClosed: (r) => reasons.push(r) });
    const id = await importTiny(store);
    const newer = await within(2000, rawDb(h.factory, DB_VERSION + 1)); // hangs unless the store lets go
    newer.close();
    expect(reasons.map((r) => r.code)).toEqual(['version-change']);
    expect((await rejection(store.list())).code).toBe('version-change');
    expect((await rejection(store.openStoredModel(id))).code).toBe('version-change');
  });

  it('keeps every stored model through a schema upgrade', async () => {
    const h = harness();
    const store = await h.open();
    const id = await importTiny(store);
    store.close();
    const upgraded = await h.open({ indexedDB: newerRelease(h.factory) });
    expect((await upgraded.list()).map((m) => m.id)).toEqual([id]);
    expect(await storedSha(upgraded, id)).toBe(TINY_SHA);
  });
});

describe('housekeeping', () => {
  it('sweeps chunks of a dead import on open, and keeps a live one', async () => {
    let t = 10 * 3600_000;
    const h = harness({ now: () => t });
    const store = await h.open();
    const keep = await importTiny(store);
    // Two imports whose tabs died after copying two chunks: one an hour and a half ago, one just now.
    const real = IDBObjectStore.prototype.put;
    let puts = 0;
    vi.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(function (this: IDBObjectStore, value: unknown, key?: IDBValidKey) {
      if (this.name === 'chunks' && ++puts === 3) throw new Error('tab killed');
      return real.call(this, value, key);
    });
    vi.spyOn(IDBObjectStore.prototype, 'delete').mockImplementation(() => {
      throw new Error('tab killed'); // so the failed import cannot clean up after itself
    });
    t -= 5400_000;
    await importTiny(store).catch(() => undefined);
    t += 5400_000;
    puts = 0;
    await importTiny(store).catch(() => undefined);
    vi.restoreAllMocks();
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 2, chunks: TINY_CHUNKS + 4 });
    store.close();
    const reopened = await h.open();
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 1, chunks: TINY_CHUNKS + 2 });
    expect(await storedSha(reopened, keep)).toBe(TINY_SHA);
  });

  it('wraps navigator.storage-like estimate() and persist(), and reports null without them', async () => {
    const storage = {
      estimate: async () => ({ usage: 300, quota: 1000 }),
      persisted: async () => false,
      persist: vi.fn(async () => true),
    };
    const store = await harness().open({ storage });
    expect(await store.estimate()).toEqual({ usage: 300, quota: 1000, free: 700, persisted: false });
    expect(await store.persist()).toBe(true);
    expect(storage.persist).toHaveBeenCalledOnce();
    const bare = await harness().open({ storage: null });
    expect(await bare.estimate()).toEqual({ usage: null, quota: null, free: null, persisted: null });
    expect(await bare.persist()).toBeNull();
    const workerLike = await harness().open({ storage: { estimate: async () => ({ usage: 1, quota: 5 }) } });
    expect(await workerLike.persist()).toBeNull();
    expect((await workerLike.estimate()).free).toBe(4);
  });

  it("reports 'unsupported' without IndexedDB", async () => {
    const saved = globalThis.indexedDB;
    Reflect.deleteProperty(globalThis, 'indexedDB');
    try {
      expect((await rejection(ModelStore.open())).code).toBe('unsupported');
    } finally {
      globalThis.indexedDB = saved;
    }
  });

  it('serves the engine worker through openStoredModel(id) on the default store', async () => {
    const store = await ModelStore.open({ storage: null }); // the global (fake) indexedDB, default name
    const id = await importTiny(store);
    store.close();
    const opened = await openStoredModel(id);
    expect(opened.config.nLayer).toBe(2);
    expect(sha256(await readAll(opened.source))).toBe(TINY_SHA);
  });
});
