import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ModelStore } from '../../src/store/index.ts';
import { CHUNK, harness, importTiny, rowCounts, sha256, storedSha, tinyBytes } from './helpers.ts';

// Chunks of an import whose tab died: swept when the store opens, shown and cleared while it runs.
// (In Node there are no Web Locks: an import counts as dead after an hour without a chunk. The
// browser test closes a tab mid-import for real.)

const TINY_CHUNKS = Math.ceil(tinyBytes().length / CHUNK);

afterEach(() => {
  vi.restoreAllMocks();
});

/** An import that copies `chunks` chunks, then its tab dies (no cleanup). */
async function dyingImport(store: ModelStore, chunks: number): Promise<void> {
  const real = IDBObjectStore.prototype.put;
  let puts = 0;
  vi.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(function (this: IDBObjectStore, value: unknown, key?: IDBValidKey) {
    if (this.name === 'chunks' && ++puts === chunks + 1) throw new Error('tab killed');
    return real.call(this, value, key);
  });
  vi.spyOn(IDBObjectStore.prototype, 'delete').mockImplementation(() => {
    throw new Error('tab killed');
  });
  await importTiny(store, 'dying').catch(() => undefined);
  vi.restoreAllMocks();
}

describe('leftovers of unfinished imports', () => {
  it('are counted exactly, cleared on demand, and a running import is left alone', async () => {
    let t = 10 * 3600_000;
    const h = harness({ now: () => t });
    const store = await h.open();
    const keep = await importTiny(store);
    expect(await store.leftovers()).toEqual({ files: 0, bytes: 0 });
    t -= 2 * 3600_000;
    await dyingImport(store, 3); // two hours ago
    t += 2 * 3600_000;
    await dyingImport(store, 2); // just now: it might still be running in another tab
    expect(await store.leftovers()).toEqual({ files: 1, bytes: 3 * CHUNK });
    await store.clearLeftovers();
    expect(await store.leftovers()).toEqual({ files: 0, bytes: 0 });
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 1, chunks: TINY_CHUNKS + 2 });
    expect(await storedSha(store, keep)).toBe(sha256(tinyBytes()));
    // An hour later, the recent one is dead too; the last, short chunk is counted by its size.
    t += 3600_000;
    expect(await store.leftovers()).toEqual({ files: 1, bytes: 2 * CHUNK });
  });

  it('counts a file whose last chunk is short by that chunk', async () => {
    let t = 10 * 3600_000;
    const h = harness({ now: () => t });
    const store = await h.open();
    await dyingImport(store, TINY_CHUNKS); // every chunk, then died before the model record
    t += 2 * 3600_000;
    expect(await store.leftovers()).toEqual({ files: 1, bytes: tinyBytes().length });
    store.close();
    await h.open(); // swept on open
    expect(await rowCounts(h.factory)).toEqual({ models: 0, downloads: 0, imports: 0, chunks: 0 });
  });
});
