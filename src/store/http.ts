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

export function httpError(res: Response): StoreError {
  const what = res.status === 404 ? 'not found' : `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  return new StoreError('http', `${res.url || 'The server'}: ${what}.`);
}

/** Maps a failed fetch or body read: an abort is a cancel, anything else a network failure. */
export function fetchFailure(e: unknown, signal: AbortSignal | undefined, url: string): StoreError {
  if (e instanceof StoreError) return e;
  if (signal?.aborted || (e instanceof Error && e.name === 'AbortError')) return cancelled();
  const detail = e instanceof Error ? e.message : String(e);
  return new StoreError('network', `The connection to ${new URL(url).host} failed (${detail}). The download can be resumed.`, { cause: e });
}

/** fetch() with failures mapped to StoreError; non-2xx statuses are returned, not thrown. */
export async function fetchOrFail(fetcher: typeof fetch, url: string, init: RequestInit): Promise<Response> {
  const signal = init.signal ?? undefined;
  if (signal?.aborted) throw cancelled();
  try {
    return await fetcher(url, init);
  } catch (e) {
    throw fetchFailure(e, signal, url);
  }
}
