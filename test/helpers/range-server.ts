import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

// A static file server on 127.0.0.1 (random port) with single-range `Range: bytes=a-[b]` support,
// and switches to misbehave: ignore Range, drop the connection after N body bytes, or stall after
// N bytes until released; and per-path answers of hostile servers: an endless body without
// Content-Length, a redirect, an error status, silence. Files and extra headers can be changed
// between requests. With `cors` on, a page of another origin may read it (the browser tests).

export interface LoggedRequest {
  method: string;
  path: string;
  range: string | null;
  status: number;
}

/** What a path answers instead of its file. */
export type Special =
  /** 200 with no Content-Length: `prefix`, then filler bytes until the client hangs up. */
  | { kind: 'endless'; prefix: Uint8Array }
  | { kind: 'redirect'; to: string }
  | { kind: 'status'; status: number; statusText?: string }
  /** Accepts a GET and never answers (a HEAD gets the file's headers). */
  | { kind: 'silent' };

export interface RangeServer {
  /** http://127.0.0.1:port, no trailing slash. */
  readonly origin: string;
  readonly files: Map<string, Uint8Array>;
  /** Extra response headers per path, e.g. x-content-sha256. */
  readonly headers: Map<string, Record<string, string>>;
  readonly requests: LoggedRequest[];
  /** Answer every request with 200 and the whole file, as some servers do. */
  ignoreRange: boolean;
  /** Send CORS headers and answer preflights, so a page on another origin can download. */
  cors: boolean;
  /** Hostile answers by path. */
  readonly special: Map<string, Special>;
  /** Body bytes sent per path (endless bodies included). */
  readonly sent: Map<string, number>;
  /** Resolves when the response to `path` ends because the client went away. */
  hungUp(path: string): Promise<void>;
  /** Destroy the socket after this many body bytes of the next response for `path`. */
  dropNext(path: string, afterBytes: number): void;
  /** Send this many body bytes of the next response for `path`, then hold until `release()`. */
  stallNext(path: string, afterBytes: number): void;
  /** Resolves once a stalled response has sent its bytes and is holding. */
  stalled(): Promise<void>;
  release(): void;
  close(): Promise<void>;
}

const PIECE = 64 * 1024;

interface Trap {
  path: string;
  after: number;
  kind: 'drop' | 'stall';
}

function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  const m = /^bytes=(\d+)-(\d*)$/.exec(header ?? '');
  if (!m) return null;
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  return start >= size || end < start ? 'unsatisfiable' : { start, end };
}

/** Waits for room in the socket buffer, or for the client to go away. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done).off('close', done);
      resolve();
    };
    res.on('drain', done).on('close', done);
  });
}

export async function startRangeServer(): Promise<RangeServer> {
  const files = new Map<string, Uint8Array>();
  const headers = new Map<string, Record<string, string>>();
  const requests: LoggedRequest[] = [];
  const sockets = new Set<Socket>();
  let trap: Trap | null = null;
  let release: () => void = () => undefined;
  let released = Promise.resolve();
  let onStalled: () => void = () => undefined;
  let stalled = new Promise<void>((r) => (onStalled = r));

  const state = { ignoreRange: false, cors: false };
  const special = new Map<string, Special>();
  const sent = new Map<string, number>();
  const hangups = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  const hangup = (path: string): { promise: Promise<void>; resolve: () => void } => {
    let h = hangups.get(path);
    if (!h) {
      let resolve: () => void = () => undefined;
      const promise = new Promise<void>((r) => (resolve = r));
      h = { promise, resolve };
      hangups.set(path, h);
    }
    return h;
  };
  const count = (path: string, n: number): void => {
    sent.set(path, (sent.get(path) ?? 0) + n);
  };

  async function endless(res: ServerResponse, path: string, prefix: Uint8Array): Promise<void> {
    const filler = new Uint8Array(PIECE).fill(0x41);
    for (let at = 0; !res.destroyed; at += PIECE) {
      const piece = at < prefix.length ? prefix.subarray(at, Math.min(prefix.length, at + PIECE)) : filler;
      count(path, piece.length);
      if (!res.write(piece)) await drained(res);
    }
  }

  async function body(res: ServerResponse, path: string, bytes: Uint8Array, t: Trap | null): Promise<void> {
    const limit = t ? Math.min(t.after, bytes.length) : bytes.length;
    for (let p = 0; p < limit; p += PIECE) {
      if (res.destroyed) return; // the client went away
      const piece = bytes.subarray(p, Math.min(limit, p + PIECE));
      count(path, piece.length);
      if (!res.write(piece)) await drained(res);
    }
    if (res.destroyed) return;
    if (t?.kind === 'drop') {
      // Let the bytes reach the client, then cut the connection mid-body.
      await new Promise<void>((r) => res.write(new Uint8Array(0), () => r()));
      res.socket?.destroy();
      return;
    }
    if (t?.kind === 'stall') {
      onStalled();
      await released;
      return body(res, path, bytes.subarray(limit), null);
    }
    res.end();
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = files.get(path);
    res.on('error', () => undefined); // a client that hangs up is part of the tests
    res.on('close', () => {
      if (!res.writableFinished) hangup(path).resolve();
    });
    const log: LoggedRequest = { method: req.method ?? '', path, range: req.headers.range ?? null, status: 0 };
    requests.push(log);
    const cors: Record<string, string> = state.cors
      ? {
          'access-control-allow-origin': '*',
          'access-control-expose-headers': 'content-range, content-length, etag, x-content-sha256, x-linked-etag, x-linked-size',
        }
      : {};
    const reply = (status: number, extra: Record<string, string | number> = {}, statusText?: string): void => {
      log.status = status;
      const all = { 'accept-ranges': 'bytes', ...cors, ...headers.get(path), ...extra };
      if (statusText) res.writeHead(status, statusText, all);
      else res.writeHead(status, all);
    };
    if (req.method === 'OPTIONS' && state.cors) {
      reply(204, { 'access-control-allow-headers': 'range', 'access-control-allow-methods': 'GET, HEAD', 'access-control-max-age': '600' });
      res.end();
      return;
    }
    const odd = special.get(path);
    if (odd?.kind === 'silent' && req.method !== 'HEAD') return;
    if (odd?.kind === 'redirect') {
      reply(302, { location: odd.to, 'content-length': 0 });
      res.end();
      return;
    }
    if (odd?.kind === 'status') {
      reply(odd.status, { 'content-length': 0 }, odd.statusText);
      res.end();
      return;
    }
    if (odd?.kind === 'endless') {
      if (req.method === 'HEAD') {
        reply(200, { 'content-type': 'application/octet-stream' });
        res.end();
        return;
      }
      reply(200, { 'content-type': 'application/octet-stream' });
      void endless(res, path, odd.prefix);
      return;
    }
    if (!file) {
      reply(404);
      res.end();
      return;
    }
    const range = state.ignoreRange ? null : parseRange(req.headers.range, file.length);
    if (range === 'unsatisfiable') {
      reply(416, { 'content-range': `bytes */${file.length}` });
      res.end();
      return;
    }
    const part = range ? file.subarray(range.start, range.end + 1) : file;
    const extra: Record<string, string | number> = { 'content-length': part.length, 'content-type': 'application/octet-stream' };
    if (range) extra['content-range'] = `bytes ${range.start}-${range.end}/${file.length}`;
    reply(range ? 206 : 200, extra);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const t = trap?.path === path ? trap : null;
    if (t) trap = null;
    void body(res, path, part, t);
  }

  const server = createServer(handle);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;

  return {
    origin: `http://127.0.0.1:${port}`,
    files,
    headers,
    requests,
    get ignoreRange() {
      return state.ignoreRange;
    },
    set ignoreRange(v: boolean) {
      state.ignoreRange = v;
    },
    get cors() {
      return state.cors;
    },
    set cors(v: boolean) {
      state.cors = v;
    },
    special,
    sent,
    hungUp: (path) => hangup(path).promise,
    dropNext: (path, after) => (trap = { path, after, kind: 'drop' }),
    stallNext(path, after) {
      trap = { path, after, kind: 'stall' };
      released = new Promise((r) => (release = r));
      stalled = new Promise((r) => (onStalled = r));
    },
    stalled: () => stalled,
    release: () => release(),
    close: () =>
      new Promise<void>((r) => {
        release();
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
