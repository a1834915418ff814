// idb wraps requests by `instanceof IDBRequest` etc., so fake-indexeddb's classes must be global;
// each test still gets its own, empty IDBFactory.
import 'fake-indexeddb/auto';
import { createHash } from 'node:crypto';
import { IDBFactory } from 'fake-indexeddb';
import { afterEach, vi } from 'vitest';
import type { ByteSource } from '../../src/engine/weights.ts';
import type { ModelStoreOptions } from '../../src/store/index.ts';
import { ModelStore, StoreError } from '../../src/store/index.ts';
import { tinyBytes, tinyConfigText } from '../helpers/model-bytes.ts';

export { tinyBytes, tinyConfigText };

export const DB = 'test-model-store';
/** Small chunks so the 6.7 MB test model spans many of them. */
export const CHUNK = 256 * 1024;

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

const opened: ModelStore[] = [];
afterEach(() => {
  for (const s of opened.splice(0)) s.close();
});

export interface Harness {
  factory: IDBFactory;
  open(options?: ModelStoreOptions): Promise<ModelStore>;
}

/** A fresh, empty database; `open` can be called again to simulate a page reload. */
export function harness(defaults: ModelStoreOptions = {}): Harness {
  const factory = new IDBFactory();
  return {
    factory,
    async open(options = {}) {
      const store = await ModelStore.open({ indexedDB: factory, dbName: DB, chunkBytes: CHUNK, storage: null, ...defaults, ...options });
      opened.push(store);
      return store;
    },
  };
}

/** Reads a whole ByteSource in uneven pieces. */
export async function readAll(source: ByteSource, piece = 300_001): Promise<Uint8Array> {
  const out = new Uint8Array(source.size);
  for (let at = 0; at < source.size; at += piece) out.set(await source.read(at, Math.min(source.size, at + piece)), at);
  return out;
}

/** sha256 of a stored model's bytes as the engine would read them. */
export async function storedSha(store: ModelStore, id: string): Promise<string> {
  return sha256(await readAll((await store.openStoredModel(id)).source));
}

/** Counts the rows of each object store, bypassing the store's code. */
export async function rowCounts(factory: IDBFactory): Promise<Record<string, number>> {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const req = factory.open(DB);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  try {
    const counts: Record<string, number> = {};
    for (const name of Array.from(db.objectStoreNames)) {
      counts[name] = await new Promise<number>((resolve, reject) => {
        const req = db.transaction(name).objectStore(name).count();
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
    }
    return counts;
  } finally {
    db.close();
  }
}

export const blob = (data: Uint8Array | string): Blob => new Blob([data as BlobPart]);

/** Imports the tiny model: the "previously stored model" that failures must not damage. */
export async function importTiny(store: ModelStore, name = 'tiny'): Promise<string> {
  return (await store.importFiles(blob(tinyConfigText()), blob(tinyBytes()), name)).id;
}


/** The StoreError `p` rejects with; fails the test if it resolves or throws something else. */
export async function rejection(p: Promise<unknown>): Promise<StoreError> {
  const e = await p.then(
    () => new Error('expected a rejection'),
    (err: unknown) => err,
  );
  if (!(e instanceof StoreError)) throw e;
  return e;
}

/** Makes the n-th chunk put (1-based) fail like a full disk does; undo with vi.restoreAllMocks(). */
export function quotaOnChunkPut(n: number, how: 'throws' | 'aborts'): void {
  const real = IDBObjectStore.prototype.put;
  let puts = 0;
  vi.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(function (this: IDBObjectStore, value: unknown, key?: IDBValidKey) {
    if (this.name !== 'chunks' || ++puts !== n) return real.call(this, value, key);
    if (how === 'throws') throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
    // Browsers usually accept the put and abort the whole transaction at commit time.
    const request = real.call(this, value, key);
    (this.transaction as unknown as { _abort(name: string): void })._abort('QuotaExceededError');
    return request;
  });
}

/** Polls until `check` holds (the store commits chunk by chunk, asynchronously). */
export async function until(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
