import { displayText } from '../engine/untrusted-text.ts';
import { StoreError, cancelled } from './errors.ts';

// What a response says about the file: where its body starts, the whole file's size, and the
// checksum or version the server announces. Hugging Face states the sha256 of LFS files in
// `x-linked-etag` (quoted); `x-content-sha256` is accepted too, for other servers and tests.

export interface ResponseFacts {
  /** Offset in the file of the body's first byte. */
  start: number;
  /** The whole file's size, when the server states it. */
  total: number | null;
  sha256: string | null;
  /** A strong ETag, to notice the file changed between sessions; weak ones are ignored. */
  etag: string | null;
}

/** Parses `bytes a-b/total` (total may be `*`). */
export function parseContentRange(value: string | null): { start: number; end: number; total: number | null } | null {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(value ?? '');
  if (!m) return null;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
}

const SHA256 = /^[0-9a-f]{64}$/;

/** The sha256 a response states, lowercase hex, or null. */
export function statedSha256(headers: Headers): string | null {
  for (const name of ['x-content-sha256', 'x-linked-etag']) {
    const raw = headers.get(name)?.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1').toLowerCase();
    if (raw && SHA256.test(raw)) return raw;
  }
  return null;
}

function contentLength(headers: Headers): number | null {
  // A compressed body's length says nothing about the file's.
  const encoding = headers.get('content-encoding');
  if (encoding && encoding.toLowerCase() !== 'identity') return null;
  const raw = headers.get('content-length');
  return raw !== null && /^\d+$/.test(raw.trim()) ? Number(raw) : null;
}

/**
 * Reads the facts of a 200 or 206 response to a request for the bytes from `requestedFrom` on;
 * throws StoreError 'http' for any other status.
 */
export function responseFacts(res: Response, requestedFrom: number): ResponseFacts {
  const sha256 = statedSha256(res.headers);
  const etagRaw = res.headers.get('etag');
  const etag = etagRaw && !etagRaw.startsWith('W/') ? etagRaw : null;
  const length = contentLength(res.headers);
  if (res.status === 200) return { start: 0, total: length, sha256, etag };
  if (res.status !== 206) throw httpError(res);
  const range = parseContentRange(res.headers.get('content-range'));
  if (range) return { start: range.start, total: range.total, sha256, etag };
  // Content-Range is not a CORS-safelisted header: a cross-origin CDN may hide it. A 206 to an
  // open-ended single range then starts where asked and runs to the end of the file.
  return { start: requestedFrom, total: length === null ? null : requestedFrom + length, sha256, etag };
}

const hostOf = (url: string): string => {
  try {
    return new URL(url).host;
  } catch {
    return url || 'The server';
  }
};

/** An error status, said for what it means to the user; 4xx other than 408/429 will not go away on retry. */
export function httpError(res: Response, requested = res.url): StoreError {
  const url = res.url || requested;
  const host = hostOf(url);
  const status = `${res.status}${res.statusText ? ` ${displayText(res.statusText, 60)}` : ''}`;
  if (res.status === 404 || res.status === 410) return new StoreError('http', `${url}: not found (${status}). Check the address.`);
  if (res.status === 401 || res.status === 403) {
    return new StoreError('http', `${host} refused the download (${status}): the model may be private or gated behind a sign-in on that site.`);
  }
  if (res.status === 408 || res.status === 429) {
    return new StoreError('http', `${host} is too busy or limits requests (${status}). Wait a minute; the download can be resumed.`);
  }
  if (res.status >= 500) return new StoreError('http', `${host} had a server error (${status}). Try again later; the download can be resumed.`);
  return new StoreError('http', `${host} answered ${status} for ${url}.`);
}

/** The browser reports a request its Content-Security-Policy blocked only through this event. */
interface Violation {
  at: number;
  uri: string;
  directive: string;
}
const violations: Violation[] = [];
let watchingViolations = false;

function watchViolations(): void {
  const target = globalThis as unknown as Partial<EventTarget>;
  if (watchingViolations || typeof target.addEventListener !== 'function') return;
  watchingViolations = true;
  target.addEventListener('securitypolicyviolation', (ev) => {
    const e = ev as SecurityPolicyViolationEvent;
    violations.push({ at: performance.now(), uri: e.blockedURI, directive: e.effectiveDirective });
    if (violations.length > 16) violations.shift();
  });
}

const connectViolation = (since: number): Violation | undefined =>
  violations.find((v) => v.at >= since && (v.directive === 'connect-src' || v.directive === 'default-src'));

const PROBE_TIMEOUT_MS = 10_000;

/** Asks `url` again without following redirects: does it answer, redirect, or not at all? */
async function probe(fetcher: typeof fetch, url: string, signal: AbortSignal | undefined): Promise<'redirects' | 'answers' | 'unreachable'> {
  const timeout = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  try {
    const res = await fetcher(url, { redirect: 'manual', headers: { Range: 'bytes=0-0' }, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    await res.body?.cancel().catch(() => undefined);
    // Browsers hide a manual redirect as an opaque one; Node shows the 3xx itself.
    return res.type === 'opaqueredirect' || (res.status >= 300 && res.status < 400) ? 'redirects' : 'answers';
  } catch {
    return 'unreachable';
  }
}

/** What Node's fetch says beneath "fetch failed" (browsers say only "Failed to fetch"). */
function lowLevelCause(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  const detail = typeof cause?.code === 'string' ? cause.code : typeof cause?.message === 'string' ? cause.message : '';
  return detail ? ` (${displayText(detail, 60)})` : '';
}

/**
 * Why fetch(url) rejected, as precisely as the browser lets us tell. A browser's fetch says only
 * "Failed to fetch" for a redirect loop, a redirect blocked by the Content-Security-Policy, a
 * server without CORS headers, a refused connection and an unknown host alike; so the error is
 * told apart by what else can be seen: a CSP violation event, navigator.onLine, and a second
 * request that does not follow redirects. Where that cannot separate two causes, the message
 * names both.
 */
export async function explainFetchFailure(fetcher: typeof fetch, e: unknown, url: string, since: number, signal?: AbortSignal): Promise<StoreError> {
  const host = hostOf(url);
  const resumable = 'The download can be resumed.';
  const rule = 'models are downloaded over https (or from this device) only.';
  const blocked = (v: Violation): StoreError => {
    // For a redirect, browsers report the URL before it (the target could leak across origins).
    const where = v.uri && hostOf(v.uri) !== host ? displayText(v.uri, 120) : null;
    return new StoreError(
      'policy',
      where
        ? `The download from ${host} was sent to ${where}, which this app's security policy blocks: ${rule}`
        : `${host} redirected the download to an address this app's security policy blocks (the browser does not say which): ${rule}`,
      { cause: e },
    );
  };
  let v = connectViolation(since);
  if (v) return blocked(v);
  if (typeof navigator !== 'undefined' && navigator.onLine === false) {
    return new StoreError('network', `This device is offline. ${resumable}`, { cause: e });
  }
  const seen = await probe(fetcher, url, signal);
  if (signal?.aborted) return cancelled();
  v = connectViolation(since);
  if (v) return blocked(v);
  if (seen === 'redirects') {
    return new StoreError(
      'redirect',
      `${host} redirects the download elsewhere, and following it failed${lowLevelCause(e)}: a redirect loop, or a redirect to a host ` +
        `that is unreachable or does not allow downloads from other sites (CORS); the browser does not say which. ${resumable}`,
      { cause: e },
    );
  }
  if (seen === 'answers') {
    return new StoreError('network', `The connection to ${host} failed${lowLevelCause(e)}, though the server answers now. ${resumable}`, { cause: e });
  }
  return new StoreError(
    'network',
    `Cannot reach ${host}${lowLevelCause(e)}: the server is down, the address is wrong, or it does not allow downloads from ` +
      `other sites (CORS); the browser does not say which. ${resumable}`,
    { cause: e },
  );
}

/** A body read that failed: the connection dropped mid-transfer. */
export function droppedConnection(e: unknown, url: string, received: number): StoreError {
  const mb = (received / 1e6).toFixed(1);
  return new StoreError('network', `The connection to ${hostOf(url)} dropped after ${mb} MB${lowLevelCause(e)}. The download can be resumed.`, { cause: e });
}

export const stalled = (url: string, ms: number): StoreError =>
  new StoreError('stalled', `${hostOf(url)} sent nothing for ${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s: the download stalled. It can be resumed.`);

/**
 * fetch() with a stall timeout, failures mapped to StoreError; non-2xx statuses are returned, not
 * thrown. `stall` aborts the request: the caller's reads of the body then fail as stalled too.
 */
export async function fetchOrFail(fetcher: typeof fetch, url: string, init: RequestInit, stall: Stall): Promise<Response> {
  const signal = stall.signal;
  if (signal.aborted) throw stall.reason(url);
  watchViolations();
  const since = performance.now();
  try {
    return await stall.guard(fetcher(url, { ...init, signal }));
  } catch (e) {
    if (e instanceof StoreError) throw e;
    if (signal.aborted) throw stall.reason(url);
    throw await explainFetchFailure(fetcher, e, url, since, signal);
  }
}

/**
 * One request's abort signal, following the caller's and fired by a timer when no byte arrives
 * for `ms`: guard() each wait for the network with it.
 */
export class Stall {
  private readonly controller = new AbortController();
  private timedOut = false;
  private readonly unfollow: () => void;

  constructor(private readonly ms: number, private readonly outer: AbortSignal | undefined) {
    const abort = (): void => this.controller.abort();
    if (outer?.aborted) abort();
    outer?.addEventListener('abort', abort, { once: true });
    this.unfollow = () => outer?.removeEventListener('abort', abort);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Awaits `p`, aborting the request if it takes longer than the stall timeout. */
  async guard<T>(p: Promise<T>): Promise<T> {
    const timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.ms);
    try {
      return await p;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Why the signal fired: the caller cancelled, or the server stalled. */
  reason(url: string): StoreError {
    return this.timedOut && !this.outer?.aborted ? stalled(url, this.ms) : cancelled();
  }

  dispose(): void {
    this.unfollow();
  }
}
