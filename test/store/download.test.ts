import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CatalogEntry, DownloadProgress, ModelStore } from '../../src/store/index.ts';
import { withHeader } from '../helpers/model-bytes.ts';
import type { RangeServer } from '../helpers/range-server.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import type { Harness } from './helpers.ts';
import { CHUNK, harness, importTiny, quotaOnChunkPut, rejection, rowCounts, sha256, storedSha, tinyBytes, tinyConfigText, until } from './helpers.ts';

// Downloads from a real HTTP server on 127.0.0.1 that supports Range and can misbehave.

const FILE = tinyBytes();
const FILE_SHA = sha256(FILE);
const TOTAL = FILE.length;
const TINY_CHUNKS = Math.ceil(TOTAL / CHUNK);
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const configWith = (patch: Record<string, unknown>): string => JSON.stringify({ ...JSON.parse(tinyConfigText()), ...patch });

let srv: RangeServer;
let dir = 0;

beforeAll(async () => {
  srv = await startRangeServer();
});
afterAll(() => srv.close());
beforeEach(() => {
  srv.ignoreRange = false;
  srv.requests.length = 0;
});
afterEach(() => {
  vi.restoreAllMocks();
});

interface Served {
  path: string;
  weights: string;
  entry(store: ModelStore): CatalogEntry;
}

/** Serves a model directory under a fresh path, so every test has its own model id. */
function serve(weights: Uint8Array = FILE, config = tinyConfigText(), headers: Record<string, string> = { 'x-content-sha256': sha256(weights) }): Served {
  const path = `/m${++dir}/`;
  srv.files.set(`${path}config.json`, text(config));
  srv.files.set(`${path}model.safetensors`, weights);
  srv.headers.set(`${path}model.safetensors`, headers);
  return { path, weights: `${path}model.safetensors`, entry: (store) => store.customModel(`${srv.origin}${path}`, 'transcript') };
}

const weightRequests = (s: Served): Array<{ range: string | null; status: number }> =>
  srv.requests.filter((r) => r.path === s.weights && r.method === 'GET').map(({ range, status }) => ({ range, status }));

async function withKeptModel(): Promise<{ h: Harness; store: ModelStore; keep: string }> {
  const h = harness();
  const store = await h.open();
  return { h, store, keep: await importTiny(store, 'keep') };
}

/** The store holds exactly the kept model, which still reads back identical bytes. */
async function expectOnlyKept(h: Harness, store: ModelStore, keep: string): Promise<void> {
  expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
  expect((await store.list()).map((m) => m.id)).toEqual([keep]);
  expect(await storedSha(store, keep)).toBe(FILE_SHA);
}

describe('download', () => {
  it('fetches the bundled model from the app base URL and reports progress', async () => {
    srv.files.set('/app/models/shakespeare/config.json', text(tinyConfigText()));
    srv.files.set('/app/models/shakespeare/model.safetensors', FILE);
    const h = harness();
    const store = await h.open({ appBaseUrl: `${srv.origin}/app/` });
    const progress: DownloadProgress[] = [];
    const m = await store.download('shakespeare', { onProgress: (p) => progress.push(p) });
    expect(m).toMatchObject({ id: 'shakespeare', template: 'play-script', origin: 'bundled', size: TOTAL, sha256: FILE_SHA, lastUsedAt: null });
    expect(await storedSha(store, 'shakespeare')).toBe(FILE_SHA);
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
    const phases = progress.map((p) => p.phase).filter((p, i, all) => p !== all[i - 1]);
    expect(phases).toEqual(['config', 'downloading', 'verifying']);
    const last = progress.filter((p) => p.phase === 'downloading').at(-1)!;
    expect(last).toMatchObject({ bytesDone: TOTAL, bytesTotal: TOTAL, percent: 100, secondsLeft: 0 });
    expect(last.bytesPerSecond).toBeGreaterThan(0);
    // Stored models need no network.
    srv.requests.length = 0;
    expect((await store.download('shakespeare')).sha256).toBe(FILE_SHA);
    expect(srv.requests).toEqual([]);
  });

  it.each([
    ['inside the first chunk', 1000],
    ['on a chunk boundary', 3 * CHUNK],
    ['in the middle', 2.5 * CHUNK],
    ['10 bytes before the end', TOTAL - 10],
  ])('resumes after the connection drops %s, also after a page reload', async (_, dropAt) => {
    const s = serve();
    const h = harness();
    let store = await h.open();
    srv.dropNext(s.weights, dropAt);
    expect((await rejection(store.download(s.entry(store)))).code).toBe('network');
    const [pending] = await store.pendingDownloads();
    const kept = Math.floor(dropAt / CHUNK) * CHUNK;
    expect(pending).toMatchObject({ bytesStored: kept, totalBytes: TOTAL, active: false });

    store.close(); // the page reloads: only IndexedDB remembers
    store = await h.open();
    expect((await store.pendingDownloads()).map((p) => p.id)).toEqual([pending.id]);
    const progress: DownloadProgress[] = [];
    const m = await store.download(pending.id, { onProgress: (p) => progress.push(p) });
    expect(m.sha256).toBe(FILE_SHA);
    expect(await storedSha(store, m.id)).toBe(FILE_SHA);
    expect(weightRequests(s).at(-1)).toEqual(kept > 0 ? { range: `bytes=${kept}-`, status: 206 } : { range: null, status: 200 });
    if (kept > 0) expect(progress[0]).toMatchObject({ phase: 'rehash', bytesTotal: TOTAL });
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
  });

  it('finishes without the network when every byte was stored before the tab died', async () => {
    const s = serve();
    const h = harness();
    const store = await h.open();
    const real = IDBObjectStore.prototype.put;
    vi.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(function (this: IDBObjectStore, value: unknown, key?: IDBValidKey) {
      if (this.name === 'models') throw new DOMException('tab closed during verification', 'UnknownError');
      return real.call(this, value, key);
    });
    const entry = s.entry(store);
    expect((await rejection(store.download(entry))).code).toBe('idb');
    vi.restoreAllMocks();
    expect(await store.pendingDownloads()).toMatchObject([{ bytesStored: TOTAL, totalBytes: TOTAL }]);
    srv.requests.length = 0;
    const m = await store.download(entry);
    expect(srv.requests).toEqual([]);
    expect(await storedSha(store, m.id)).toBe(FILE_SHA);
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
  });

  it('starts over cleanly when the server ignores Range', async () => {
    const s = serve();
    const h = harness();
    const store = await h.open();
    srv.dropNext(s.weights, 4 * CHUNK + 77);
    await rejection(store.download(s.entry(store)));
    srv.ignoreRange = true;
    const m = await store.download(s.entry(store));
    expect(weightRequests(s)).toEqual([
      { range: null, status: 200 },
      { range: `bytes=${4 * CHUNK}-`, status: 200 },
    ]);
    expect(await storedSha(store, m.id)).toBe(FILE_SHA);
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: TINY_CHUNKS });
  });

  it('starts over when the file changed on the server between two sessions', async () => {
    const s = serve();
    const store = await harness().open();
    srv.dropNext(s.weights, 3 * CHUNK);
    await rejection(store.download(s.entry(store)));
    // A new revision: a longer header moves every byte.
    const revised = withHeader((hd) => ((hd.__metadata__ as unknown as Record<string, string>).note = 'revised'.repeat(100)));
    srv.files.set(s.weights, revised);
    srv.headers.set(s.weights, { 'x-content-sha256': sha256(revised) });
    const m = await store.download(s.entry(store));
    expect(weightRequests(s).slice(1)).toEqual([
      { range: `bytes=${3 * CHUNK}-`, status: 206 },
      { range: null, status: 200 },
    ]);
    expect(m.size).toBe(revised.length);
    expect(await storedSha(store, m.id)).toBe(sha256(revised));
  });

  it('resumes when a cross-origin server hides Content-Range (not CORS-safelisted)', async () => {
    const s = serve();
    const hiding: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (res.status !== 206) return res;
      const headers = new Headers(res.headers);
      headers.delete('content-range');
      return new Response(res.body, { status: 206, headers });
    };
    const store = await harness().open({ fetch: hiding });
    srv.dropNext(s.weights, 2.5 * CHUNK);
    await rejection(store.download(s.entry(store)));
    const m = await store.download(s.entry(store));
    expect(weightRequests(s).at(-1)).toEqual({ range: `bytes=${2 * CHUNK}-`, status: 206 });
    expect(await storedSha(store, m.id)).toBe(FILE_SHA);
  });

  it('accepts the sha256 in a quoted x-linked-etag, as Hugging Face sends it', async () => {
    const s = serve(FILE, tinyConfigText(), { 'x-linked-etag': `"${FILE_SHA}"` });
    const store = await harness().open();
    expect((await store.download(s.entry(store))).sha256).toBe(FILE_SHA);
  });
});

describe('a bad download is discarded and the store is unchanged', () => {
  const corrupt = (): Uint8Array => {
    const b = FILE.slice();
    b[9] ^= 0xff; // inside the JSON header
    return b;
  };
  it.each([
    ['a flipped header byte', () => serve(corrupt()), 'invalid-model'],
    // The header states the size: a cut-off file is refused once its header is in.
    ['a truncated file', () => serve(FILE.subarray(0, TOTAL - 1000)), 'size-mismatch'],
    ['a file with trailing bytes', () => serve(new Uint8Array([...FILE, 1, 2, 3])), 'size-mismatch'],
    ['a wrong sha256 header', () => serve(FILE, tinyConfigText(), { 'x-content-sha256': 'ab'.repeat(32) }), 'hash-mismatch'],
    ['a wrong quoted x-linked-etag', () => serve(FILE, tinyConfigText(), { 'x-linked-etag': `"${'0'.repeat(64)}"` }), 'hash-mismatch'],
    ['a config whose n_embd disagrees', () => serve(FILE, configWith({ n_embd: 32 })), 'invalid-model'],
  ])('%s', async (_, make, code) => {
    const s = make();
    const { h, store, keep } = await withKeptModel();
    const e = await rejection(store.download(s.entry(store)));
    expect(e.code).toBe(code);
    await expectOnlyKept(h, store, keep);
    expect(await store.pendingDownloads()).toEqual([]);
  });

  it('rejects a bad header as soon as it is in, not after the whole file', async () => {
    const s = serve(FILE, configWith({ n_embd: 32 }));
    const store = await harness().open();
    const seen: number[] = [];
    const e = await rejection(store.download(s.entry(store), { onProgress: (p) => seen.push(p.bytesDone) }));
    expect(e.message).toMatch(/disagrees with config\.json/);
    expect(Math.max(...seen)).toBeLessThan(TOTAL / 2);
  });

  it('a config.json that is not JSON: nothing recorded, weights never requested', async () => {
    const s = serve(FILE, '{"n_layer": 2,');
    const { h, store, keep } = await withKeptModel();
    expect((await rejection(store.download(s.entry(store)))).code).toBe('invalid-model');
    expect(weightRequests(s)).toEqual([]);
    await expectOnlyKept(h, store, keep);
  });

  it('a body shorter than the announced size', async () => {
    const s = serve();
    const lying: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!String(input).endsWith('.safetensors')) return res;
      const headers = new Headers(res.headers);
      headers.set('content-length', String(TOTAL + CHUNK));
      return new Response(res.body, { status: res.status, headers });
    };
    const { h, store, keep } = await withKeptModel();
    const other = await h.open({ fetch: lying });
    expect((await rejection(other.download(s.entry(other)))).code).toBe('size-mismatch');
    await expectOnlyKept(h, store, keep);
  });

  it('a 404 for config.json', async () => {
    const { h, store, keep } = await withKeptModel();
    const e = await rejection(store.download(store.customModel(`${srv.origin}/nowhere/`, 'transcript')));
    expect(e.code).toBe('http');
    expect(e.message).toMatch(/not found/);
    await expectOnlyKept(h, store, keep);
  });
});

describe('cancel and discard', () => {
  it('cancels mid-transfer via the AbortSignal or cancel(id), leaving a resumable download', async () => {
    for (const how of ['signal', 'cancel'] as const) {
      const s = serve();
      const store = await harness().open();
      srv.stallNext(s.weights, 3.5 * CHUNK);
      const controller = new AbortController();
      const entry = s.entry(store);
      const job = store.download(entry, { signal: controller.signal });
      await srv.stalled();
      await until(async () => (await store.pendingDownloads())[0]?.bytesStored === 3 * CHUNK);
      expect((await store.pendingDownloads())[0].active).toBe(true);
      if (how === 'signal') controller.abort();
      else expect(store.cancel(entry.id)).toBe(true);
      expect((await rejection(job)).code, how).toBe('cancelled');
      srv.release();
      expect(await store.pendingDownloads()).toMatchObject([{ bytesStored: 3 * CHUNK, active: false }]);
      expect(store.cancel(entry.id)).toBe(false);
      const m = await store.download(entry);
      expect(weightRequests(s).at(-1)).toEqual({ range: `bytes=${3 * CHUNK}-`, status: 206 });
      expect(await storedSha(store, m.id), how).toBe(FILE_SHA);
    }
  });

  it('a signal aborted up front fetches and stores nothing', async () => {
    const s = serve();
    const h = harness();
    const store = await h.open();
    expect((await rejection(store.download(s.entry(store), { signal: AbortSignal.abort() }))).code).toBe('cancelled');
    expect(srv.requests).toEqual([]);
    expect(await rowCounts(h.factory)).toEqual({ models: 0, downloads: 0, imports: 0, chunks: 0 });
  });

  it('discards a partial download, also while it runs', async () => {
    const { h, store, keep } = await withKeptModel();
    const s = serve();
    srv.dropNext(s.weights, 2 * CHUNK);
    const entry = s.entry(store);
    await rejection(store.download(entry));
    expect(await store.discard(entry.id)).toBe(true);
    await expectOnlyKept(h, store, keep);
    expect(await store.discard(entry.id)).toBe(false);

    srv.stallNext(s.weights, 2.5 * CHUNK);
    const job = rejection(store.download(entry));
    await srv.stalled();
    await until(async () => (await store.pendingDownloads())[0]?.bytesStored === 2 * CHUNK);
    expect(await store.discard(entry.id)).toBe(true);
    expect((await job).code).toBe('cancelled');
    srv.release();
    await expectOnlyKept(h, store, keep);
  });

  it('stops writing when another tab discards the download mid-transfer', async () => {
    const { h, store, keep } = await withKeptModel();
    const otherTab = await h.open();
    const s = serve();
    srv.stallNext(s.weights, 2.5 * CHUNK);
    const entry = s.entry(store);
    const job = rejection(store.download(entry));
    await srv.stalled();
    await until(async () => (await store.pendingDownloads())[0]?.bytesStored === 2 * CHUNK);
    expect(await otherTab.discard(entry.id)).toBe(true);
    srv.release(); // the next chunk arrives, and must not be written
    const e = await job;
    expect(e.code).toBe('cancelled');
    expect(e.message).toMatch(/discarded/);
    await expectOnlyKept(h, store, keep);
  });

  it('refuses a second download of the same model while one runs', async () => {
    const s = serve();
    const store = await harness().open();
    srv.stallNext(s.weights, CHUNK);
    const entry = s.entry(store);
    const first = store.download(entry);
    await srv.stalled();
    expect((await rejection(store.download(entry))).code).toBe('busy');
    srv.release();
    expect((await first).sha256).toBe(FILE_SHA);
  });
});

describe('a full disk during a download', () => {
  it.each(['throws', 'aborts'] as const)('fails with quota, keeps the store intact and the download resumable (put %s)', async (how) => {
    const s = serve();
    const { h, store, keep } = await withKeptModel();
    quotaOnChunkPut(3, how);
    const entry = s.entry(store);
    expect((await rejection(store.download(entry))).code).toBe('quota');
    vi.restoreAllMocks();
    expect(await store.pendingDownloads()).toMatchObject([{ id: entry.id, bytesStored: 2 * CHUNK }]);
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 1, imports: 0, chunks: TINY_CHUNKS + 2 });
    expect(await storedSha(store, keep)).toBe(FILE_SHA);
    // Space freed: the download carries on from where it stopped.
    const m = await store.download(entry);
    expect(weightRequests(s).at(-1)).toEqual({ range: `bytes=${2 * CHUNK}-`, status: 206 });
    expect(await storedSha(store, m.id)).toBe(FILE_SHA);
  });
});

describe('planDownload', () => {
  const storage = (free: number) => ({ estimate: async () => ({ usage: 1000, quota: 1000 + free }) });

  it('states the exact size from the server, the partial bytes and whether it fits', async () => {
    const s = serve();
    const store = await harness().open({ storage: storage(TOTAL - 1) });
    const entry = s.entry(store);
    expect(await store.planDownload(entry)).toEqual({
      modelId: entry.id, stored: false, bytes: TOTAL, bytesSource: 'server', bytesStored: 0, bytesNeeded: TOTAL,
      freeBytes: TOTAL - 1, fits: false, persisted: null,
    });
    srv.dropNext(s.weights, 2 * CHUNK);
    await rejection(store.download(entry));
    expect(await store.planDownload(entry)).toMatchObject({ bytesStored: 2 * CHUNK, bytesNeeded: TOTAL - 2 * CHUNK, fits: true });
    await store.download(entry);
    expect(await store.planDownload(entry)).toMatchObject({ stored: true, bytesNeeded: 0 });
  });

  it("falls back to the catalog's figure when the server does not answer", async () => {
    const store = await harness().open({ appBaseUrl: `${srv.origin}/missing/`, storage: null });
    expect(await store.planDownload('shakespeare')).toMatchObject({ bytes: 15e6, bytesSource: 'catalog', freeBytes: null, fits: null });
  });
});
