import { createServer } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DownloadProgress, ModelStore } from '../../src/store/index.ts';
import { encodeSafetensors, tinyTensors } from '../helpers/model-bytes.ts';
import type { RangeServer } from '../helpers/range-server.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import { blob, CHUNK, harness, rejection, rowCounts, sha256, storedSha, tinyBytes, tinyConfigText } from './helpers.ts';

// A limit on every input of a download: the size the safetensors header states, the server's
// and the catalog's sizes, config.json's size, a stall timeout; and an error per cause of failure.

const FILE = tinyBytes();
const TOTAL = FILE.length;
const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const STALL_MS = 400;

let srv: RangeServer;
let dir = 0;

beforeAll(async () => {
  srv = await startRangeServer();
});
afterAll(() => srv.close());
beforeEach(() => {
  srv.requests.length = 0;
});

/** A fresh model directory on the server; returns its URL and the weights' path. */
function serve(weights: Uint8Array | null = FILE, config: string = tinyConfigText()): { url: string; weights: string; config: string } {
  const path = `/lim${++dir}/`;
  srv.files.set(`${path}config.json`, text(config));
  if (weights) srv.files.set(`${path}model.safetensors`, weights);
  return { url: `${srv.origin}${path}`, weights: `${path}model.safetensors`, config: `${path}config.json` };
}

const open = (h = harness()): Promise<ModelStore> => h.open({ stallTimeoutMs: STALL_MS });

describe('a download stops at the size the file states', () => {
  it('an endless body without Content-Length: exactly the stated bytes are stored, and the connection is closed', async () => {
    const s = serve(null);
    srv.special.set(s.weights, { kind: 'endless', prefix: FILE });
    const h = harness();
    const store = await open(h);
    const seen: DownloadProgress[] = [];
    const m = await store.download(store.customModel(s.url, 'transcript'), { onProgress: (p) => seen.push(p) });
    expect(m.size).toBe(TOTAL);
    expect(await storedSha(store, m.id)).toBe(sha256(FILE));
    expect(await rowCounts(h.factory)).toEqual({ models: 1, downloads: 0, imports: 0, chunks: Math.ceil(TOTAL / CHUNK) });
    expect(Math.max(...seen.map((p) => p.bytesDone))).toBe(TOTAL);
    // Once the header was in, progress knew the size (there was no Content-Length).
    expect(seen.filter((p) => p.phase === 'downloading').at(-1)).toMatchObject({ bytesTotal: TOTAL, percent: 100 });
    await srv.hungUp(s.weights);
    // The server stopped because the client went away, within what socket buffers hold.
    expect(srv.sent.get(s.weights)!).toBeLessThan(TOTAL + (16 << 20));
  });

  it('an endless body whose header says its size is beyond twice the catalog figure: refused once the header is in', async () => {
    // The bundled model's catalog entry says ≈ 15 MB; this header states a 200 MB file.
    const config = { ...JSON.parse(tinyConfigText()), vocab_size: 50257, n_embd: 1024, n_head: 16, n_positions: 1024, n_layer: 2 };
    const big = bigHeaderOnly(config);
    srv.files.set('/app/models/shakespeare/config.json', text(JSON.stringify(config)));
    srv.special.set('/app/models/shakespeare/model.safetensors', { kind: 'endless', prefix: big });
    const h = harness();
    const store = await h.open({ appBaseUrl: `${srv.origin}/app/`, stallTimeoutMs: STALL_MS });
    const e = await rejection(store.download('shakespeare'));
    expect(e.code).toBe('size-mismatch');
    expect(e.message).toMatch(/header states \d+ bytes, far more than the catalog's figure/);
    expect(await rowCounts(h.factory)).toEqual({ models: 0, downloads: 0, imports: 0, chunks: 0 });
  });

  it('a body that ends cleanly before the stated size keeps the whole chunks for a resume', async () => {
    const s = serve(null);
    srv.special.set(s.weights, { kind: 'endless', prefix: FILE });
    const cut = 3 * CHUNK + 100;
    const h = harness();
    const short: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (!String(input).endsWith('.safetensors') || !res.body) return res;
      const reader = res.body.getReader();
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(c) {
          const r = await reader.read();
          if (r.done || sent >= cut) {
            await reader.cancel();
            c.close();
            return;
          }
          const piece = r.value.subarray(0, cut - sent);
          sent += piece.length;
          c.enqueue(piece);
        },
      });
      return new Response(body, { status: res.status, headers: res.headers });
    };
    const store = await h.open({ fetch: short, stallTimeoutMs: STALL_MS });
    const entry = store.customModel(s.url, 'transcript');
    const e = await rejection(store.download(entry));
    expect(e.code).toBe('network');
    expect(e.message).toMatch(new RegExp(`ended the transfer at ${cut} of ${TOTAL} bytes`));
    expect(await store.pendingDownloads()).toMatchObject([{ bytesStored: 3 * CHUNK, totalBytes: TOTAL }]);
  });

  it('config.json is read to 1 MiB at most: an endless one is refused and nothing is recorded', async () => {
    const s = serve();
    srv.special.set(s.config, { kind: 'endless', prefix: text('{"n_layer": 2, "pad": "') });
    const h = harness();
    const store = await open(h);
    const e = await rejection(store.download(store.customModel(s.url, 'transcript')));
    expect(e.code).toBe('invalid-model');
    expect(e.message).toMatch(/larger than 1048576 bytes/);
    expect(await rowCounts(h.factory)).toEqual({ models: 0, downloads: 0, imports: 0, chunks: 0 });
    await srv.hungUp(s.config);
    expect(srv.sent.get(s.config)!).toBeLessThan((1 << 20) + (16 << 20));
  });
});

describe('a stall is an error after the stall timeout, and the download resumes', () => {
  it('a server that never answers the request', async () => {
    const s = serve();
    srv.special.set(s.weights, { kind: 'silent' });
    const store = await open();
    const entry = store.customModel(s.url, 'transcript');
    const e = await rejection(store.download(entry));
    expect(e.code).toBe('stalled');
    expect(e.message).toBe(`127.0.0.1:${new URL(srv.origin).port} sent nothing for 0.4 s: the download stalled. It can be resumed.`);
    expect(await store.pendingDownloads()).toMatchObject([{ id: entry.id, bytesStored: 0 }]);
    srv.special.delete(s.weights);
    expect((await store.download(entry)).sha256).toBe(sha256(FILE));
  });

  it('a server that stops sending mid-file', async () => {
    const s = serve();
    const store = await open();
    const entry = store.customModel(s.url, 'transcript');
    srv.stallNext(s.weights, 2 * CHUNK + 500);
    const e = await rejection(store.download(entry));
    expect(e.code).toBe('stalled');
    srv.release();
    expect(await store.pendingDownloads()).toMatchObject([{ bytesStored: 2 * CHUNK, active: false }]);
    const m = await store.download(entry);
    expect(srv.requests.filter((r) => r.path === s.weights).at(-1)).toMatchObject({ range: `bytes=${2 * CHUNK}-`, status: 206 });
    expect(await storedSha(store, m.id)).toBe(sha256(FILE));
  });
});

describe('each cause of a failed download has its own message', () => {
  it('a redirect loop', async () => {
    const s = serve();
    srv.special.set(s.weights, { kind: 'redirect', to: s.weights });
    const store = await open();
    const e = await rejection(store.download(store.customModel(s.url, 'transcript')));
    expect(e.code).toBe('redirect');
    expect(e.message).toMatch(/^127\.0\.0\.1:\d+ redirects the download elsewhere, and following it failed .*: a redirect loop, or a redirect to a host that is unreachable/);
  });

  it('a server error', async () => {
    const s = serve();
    srv.special.set(s.weights, { kind: 'status', status: 503, statusText: 'Service Unavailable' });
    const store = await open();
    const entry = store.customModel(s.url, 'transcript');
    const e = await rejection(store.download(entry));
    expect(e.code).toBe('http');
    expect(e.message).toMatch(/had a server error \(503 Service Unavailable\)\. Try again later; the download can be resumed\./);
    expect(await store.pendingDownloads()).toMatchObject([{ id: entry.id }]);
  });

  it('access refused', async () => {
    const s = serve();
    srv.special.set(s.config, { kind: 'status', status: 403, statusText: 'Forbidden' });
    const store = await open();
    const e = await rejection(store.download(store.customModel(s.url, 'transcript')));
    expect(e.message).toMatch(/refused the download \(403 Forbidden\): the model may be private or gated/);
  });

  it('a host that cannot be reached', async () => {
    const port = await closedPort();
    const store = await open();
    const e = await rejection(store.download(store.customModel(`http://127.0.0.1:${port}/m/`, 'transcript')));
    expect(e.code).toBe('network');
    expect(e.message).toMatch(new RegExp(`^Cannot reach 127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\): the server is down, the address is wrong`));
  });

  it('a connection that drops mid-file', async () => {
    const s = serve();
    srv.dropNext(s.weights, CHUNK + 10);
    const store = await open();
    const e = await rejection(store.download(store.customModel(s.url, 'transcript')));
    expect(e.code).toBe('network');
    expect(e.message).toMatch(/^The connection to 127\.0\.0\.1:\d+ dropped after 0\.\d MB/);
  });
});

describe('NaN and infinite weights are refused before the model is stored', () => {
  const poisoned = (value: number, dtype: 'F16' | 'F32' | 'BF16' = 'F16', name = 'h.1.mlp.c_proj.weight', element = 4321): Uint8Array => {
    const tensors = tinyTensors().map((t) => ({ ...t, dtype }));
    tensors.find((t) => t.name === name)!.data[element] = value;
    return encodeSafetensors(tensors);
  };

  it.each([
    ['NaN, F16', NaN, 'F16'],
    ['+Infinity, F32', Infinity, 'F32'],
    ['-Infinity, BF16', -Infinity, 'BF16'],
  ] as const)('an import with %s', async (_, value, dtype) => {
    const h = harness();
    const store = await open(h);
    const e = await rejection(store.importFiles(blob(tinyConfigText()), blob(poisoned(value, dtype)), 'nan'));
    expect(e.code).toBe('invalid-model');
    expect(e.message).toBe('Not a usable GPT-2 model: h.1.mlp.c_proj.weight: holds NaN or infinite values (element 4321); the file cannot be used');
    expect(await rowCounts(h.factory)).toEqual({ models: 0, downloads: 0, imports: 0, chunks: 0 });
  });

  it('a download, also a resumed one (the stored part is checked again on resume)', async () => {
    // The token embedding is the file's last tensor: the bad value lies near the end.
    const element = 50257 * 64 - 7;
    const bad = poisoned(NaN, 'F16', 'wte.weight', element);
    const s = serve(bad);
    const h = harness();
    const store = await open(h);
    const entry = store.customModel(s.url, 'transcript');
    // Stop well before it, then resume.
    srv.dropNext(s.weights, CHUNK);
    expect((await rejection(store.download(entry))).code).toBe('network');
    expect(await store.pendingDownloads()).toMatchObject([{ bytesStored: CHUNK }]);
    const e = await rejection(store.download(entry));
    expect(e.code).toBe('invalid-model');
    expect(e.message).toMatch(new RegExp(`wte\\.weight: holds NaN or infinite values \\(element ${element}\\)`));
    expect(await rowCounts(h.factory)).toEqual({ models: 0, downloads: 0, imports: 0, chunks: 0 });
  });

  it('a clean model imports, also fed in pieces that cut its elements', async () => {
    const store = await open();
    const m = await store.importFiles(blob(tinyConfigText()), blob(FILE), 'clean');
    expect(m.sha256).toBe(sha256(FILE));
  });
});

/** A port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** The first bytes of a safetensors file for `config` (its header), F32: the file would be large. */
function bigHeaderOnly(config: Record<string, number | string>): Uint8Array {
  const d = Number(config.n_embd);
  const shapes: Array<[string, number[]]> = [
    ['wte.weight', [Number(config.vocab_size), d]],
    ['wpe.weight', [Number(config.n_positions), d]],
    ['ln_f.weight', [d]],
    ['ln_f.bias', [d]],
  ];
  for (let l = 0; l < Number(config.n_layer); l++) {
    for (const [n, s] of [
      ['ln_1.weight', [d]], ['ln_1.bias', [d]], ['attn.c_attn.weight', [d, 3 * d]], ['attn.c_attn.bias', [3 * d]],
      ['attn.c_proj.weight', [d, d]], ['attn.c_proj.bias', [d]], ['ln_2.weight', [d]], ['ln_2.bias', [d]],
      ['mlp.c_fc.weight', [d, 4 * d]], ['mlp.c_fc.bias', [4 * d]], ['mlp.c_proj.weight', [4 * d, d]], ['mlp.c_proj.bias', [d]],
    ] as Array<[string, number[]]>) shapes.push([`h.${l}.${n}`, s]);
  }
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const [name, shape] of shapes) {
    const bytes = 4 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: 'F32', shape, data_offsets: [at, at + bytes] };
    at += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}
