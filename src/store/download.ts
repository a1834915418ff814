import type { ByteSource } from '../engine/weights.ts';
import { chunkSource } from './chunks.ts';
import type { DownloadRecord, DownloadTarget, ModelRecord } from './db.ts';
import { StoreError, cancelled } from './errors.ts';
import { FileCheck } from './file-check.ts';
import type { ResponseFacts } from './http.ts';
import { droppedConnection, fetchOrFail, httpError, responseFacts, Stall } from './http.ts';
import { randomId } from './ids.ts';
import type { DownloadProgress } from './progress.ts';
import { ProgressReporter } from './progress.ts';
import { createSha256, toHex } from './sha256.ts';
import type { StoreContext, Tx } from './tx.ts';
import { fileChunks, runTx } from './tx.ts';
import { checkConfig, checkModel, MAX_CONFIG_BYTES } from './validate.ts';

// Streams model.safetensors into IndexedDB chunk by chunk. Only whole chunks are committed, each
// in one transaction with the download record's byte count, so an interrupted download (closed
// tab, dropped connection, stall, cancel, full disk) always resumes from a consistent chunk
// boundary. A file that fails a check (size, sha256, parser, a NaN value) is discarded; nothing
// else is ever touched.
//
// Every input is bounded. config.json is read up to MAX_CONFIG_BYTES. The weights stop at the
// size the safetensors header states (8 + header length + the end of the last tensor's data) as
// soon as the header is in, whatever the server sends after it; before that, at the size the
// server announces and at twice the catalog's figure. No byte for `stallMs` is a 'stalled' error.

export type { DownloadTarget } from './db.ts';

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** Checked in addition to any sha256 the server announces (lowercase or uppercase hex). */
  expectedSha256?: string;
}

/** Failures that condemn the file itself: resuming would only fetch the same bad bytes. */
const FATAL = new Set(['size-mismatch', 'hash-mismatch', 'invalid-model']);

/**
 * Downloads (or resumes) a model; resolves with the stored model, at once if already stored.
 * `maxBytes`: a bound on the file's size from elsewhere (the catalog), or null.
 */
export async function downloadModel(ctx: StoreContext, target: DownloadTarget, opts: DownloadOptions = {}, maxBytes: number | null = null): Promise<ModelRecord> {
  const stored = await runTx(ctx, ['models'], 'readonly', (tx) => tx.store.get(target.id));
  if (stored) return stored;
  const report = new ProgressReporter(target.id, opts.onProgress, ctx.now);
  const pending = await runTx(ctx, ['downloads'], 'readonly', (tx) => tx.store.get(target.id));
  const rec = pending ? { ...pending, configUrl: target.configUrl, weightsUrl: target.weightsUrl } : await begin(ctx, target, opts, report);
  return new DownloadJob(ctx, rec, opts, report, maxBytes).run();
}

/** Reads a response body as text, refusing more than `max` bytes; guarded against stalls. */
async function boundedText(res: Response, max: number, url: string, stall: Stall): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let length = 0;
  try {
    for (;;) {
      const r = await stall.guard(reader.read()).catch((e: unknown) => {
        throw stall.signal.aborted ? stall.reason(url) : droppedConnection(e, url, length);
      });
      if (r.done) break;
      length += r.value.length;
      if (length > max) {
        throw new StoreError('invalid-model', `Not a usable GPT-2 model: ${url} is larger than ${max} bytes; a GPT-2 config.json has a few hundred.`);
      }
      parts.push(r.value);
    }
  } catch (e) {
    reader.cancel().catch(() => undefined);
    throw e;
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  return new TextDecoder().decode(bytes);
}

/** Fetches and checks config.json, then records the download; nothing is stored if the config is bad. */
async function begin(ctx: StoreContext, target: DownloadTarget, opts: DownloadOptions, report: ProgressReporter): Promise<DownloadRecord> {
  report.phase('config', 0, null);
  const stall = new Stall(ctx.stallMs, opts.signal);
  let configText: string;
  try {
    const res = await fetchOrFail(ctx.fetch, target.configUrl, {}, stall);
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw httpError(res, target.configUrl);
    }
    configText = await boundedText(res, MAX_CONFIG_BYTES, target.configUrl, stall);
  } finally {
    stall.dispose();
  }
  await checkConfig(configText);
  const now = ctx.now();
  const rec: DownloadRecord = {
    ...target,
    configText,
    fileId: randomId(),
    chunkBytes: ctx.chunkBytes,
    bytesStored: 0,
    totalBytes: null,
    sha256: null,
    etag: null,
    startedAt: now,
    updatedAt: now,
  };
  if (opts.signal?.aborted) throw cancelled();
  await runTx(ctx, ['downloads'], 'readwrite', async (tx) => {
    await tx.store.put(rec);
  });
  return rec;
}

/** Deletes a partial download and its chunks; a no-op when there is none. */
export async function discardDownload(ctx: StoreContext, id: string): Promise<boolean> {
  return runTx(ctx, ['downloads', 'chunks'], 'readwrite', async (tx) => {
    const rec = await tx.objectStore('downloads').get(id);
    if (!rec) return false;
    await tx.objectStore('chunks').delete(fileChunks(rec.fileId));
    await tx.objectStore('downloads').delete(id);
    return true;
  });
}

const normalizeSha = (s: string | undefined): string | null => s?.trim().toLowerCase() || null;

class DownloadJob {
  private hasher = createSha256();
  /** Sees every byte of the file in order: the stored part on a resume, then the stream. */
  private check: FileCheck;
  private readonly signal: AbortSignal | undefined;

  constructor(
    private readonly ctx: StoreContext,
    private rec: DownloadRecord,
    private readonly opts: DownloadOptions,
    private readonly report: ProgressReporter,
    private readonly maxBytes: number | null,
  ) {
    this.signal = opts.signal;
    this.check = new FileCheck(rec.configText);
  }

  async run(): Promise<ModelRecord> {
    try {
      await this.rehash();
      if (this.rec.totalBytes === null || this.rec.bytesStored < this.rec.totalBytes) await this.transfer();
      return await this.finish();
    } catch (e) {
      if (e instanceof StoreError && FATAL.has(e.code)) await discardDownload(this.ctx, this.rec.id).catch(() => false);
      throw e;
    }
  }

  private source(size: number): ByteSource {
    return chunkSource(this.ctx, { fileId: this.rec.fileId, size, chunkBytes: this.rec.chunkBytes });
  }

  private checkCancelled(): void {
    if (this.signal?.aborted) throw cancelled();
  }

  /** The size the file must have: the header's word once it is in, else the server's. */
  private expectedSize(): number | null {
    return this.check.size ?? this.rec.totalBytes;
  }

  /** Feeds the chunks stored by an earlier session to the hasher and the file check. */
  private async rehash(): Promise<void> {
    const { bytesStored, chunkBytes, totalBytes } = this.rec;
    if (bytesStored === 0) return;
    const source = this.source(bytesStored);
    try {
      for (let at = 0; at < bytesStored; at += chunkBytes) {
        this.checkCancelled();
        this.report.phase('rehash', at, totalBytes);
        const bytes = await source.read(at, Math.min(bytesStored, at + chunkBytes));
        this.hasher.update(bytes);
        this.check.feed(bytes);
      }
    } catch (e) {
      if (!(e instanceof StoreError && e.code === 'corrupt')) throw e;
      await this.reset(); // a partial download with holes is not worth keeping
    }
    this.checkSizes();
  }

  private changedUpstream(f: ResponseFacts): boolean {
    const differs = <T>(a: T | null, b: T | null): boolean => a !== null && b !== null && a !== b;
    return differs(this.rec.totalBytes, f.total) || differs(this.rec.sha256, f.sha256) || differs(this.rec.etag, f.etag);
  }

  private async transfer(): Promise<void> {
    const stall = new Stall(this.ctx.stallMs, this.signal);
    try {
      const request = (from: number): Promise<Response> =>
        fetchOrFail(this.ctx.fetch, this.rec.weightsUrl, { headers: from > 0 ? { Range: `bytes=${from}-` } : {} }, stall);
      const from = this.rec.bytesStored;
      let res = await request(from);
      let facts = res.status === 416 ? null : responseFacts(res, from);
      if (!facts || facts.start !== from || this.changedUpstream(facts)) {
        // The server ignored the Range (200), no longer has it (416), or the file changed: start over.
        await this.reset();
        if (!facts || facts.start !== 0) {
          await res.body?.cancel().catch(() => undefined);
          res = await request(0);
          facts = responseFacts(res, 0);
          if (facts.start !== 0) throw new StoreError('http', `${this.rec.weightsUrl}: the server sent bytes from ${facts.start} instead of the whole file.`);
        }
      }
      await this.adopt(facts);
      this.checkSizes();
      this.report.phase('downloading', this.rec.bytesStored, this.expectedSize());
      await this.stream(res, stall);
    } finally {
      stall.dispose();
    }
  }

  /**
   * Reads the body into fixed-size chunks, committing each as soon as it is full; stops at the
   * file's size as soon as that is known, so bytes past it are never stored.
   */
  private async stream(res: Response, stall: Stall): Promise<void> {
    if (!res.body) throw new StoreError('http', `${this.rec.weightsUrl}: the response has no body.`);
    const reader = res.body.getReader();
    const buf = new Uint8Array(this.rec.chunkBytes);
    let fill = 0;
    try {
      for (;;) {
        const size = this.expectedSize();
        if (size !== null && this.rec.bytesStored + fill >= size) {
          // The whole file is in: hang up before storing the last chunk, whatever the server
          // still sends (or holds the line open for).
          reader.cancel().catch(() => undefined);
          break;
        }
        const got = await this.read(reader, stall, this.rec.bytesStored + fill);
        if (!got) break;
        let piece = got;
        this.check.feed(piece);
        this.checkSizes();
        piece = this.within(piece, this.rec.bytesStored + fill);
        for (let p = 0; p < piece.length; ) {
          const n = Math.min(buf.length - fill, piece.length - p);
          buf.set(piece.subarray(p, p + n), fill);
          fill += n;
          p += n;
          if (fill === buf.length) {
            await this.commit(buf, false);
            fill = 0;
          }
        }
        this.report.received(this.rec.bytesStored + fill, this.expectedSize());
      }
      const size = this.expectedSize();
      if (size !== null && this.rec.bytesStored + fill < size) {
        // The body ended cleanly but short (no Content-Length to tell it was cut): keep the whole
        // chunks for a resume.
        const got = this.rec.bytesStored + fill;
        throw new StoreError('network', `${this.rec.weightsUrl}: the server ended the transfer at ${got} of ${size} bytes. The download can be resumed.`);
      }
      await this.commit(buf.subarray(0, fill), true);
    } finally {
      reader.cancel().catch(() => undefined);
    }
    this.report.received(this.rec.bytesStored, this.rec.totalBytes, true);
  }

  private async read(reader: ReadableStreamDefaultReader<Uint8Array>, stall: Stall, received: number): Promise<Uint8Array | null> {
    try {
      const r = await stall.guard(reader.read());
      return r.done ? null : r.value;
    } catch (e) {
      throw stall.signal.aborted ? stall.reason(this.rec.weightsUrl) : droppedConnection(e, this.rec.weightsUrl, received);
    }
  }

  /**
   * The part of `piece` (arriving at offset `received`) inside the file. Bytes past the size the
   * header states are not the file's and are dropped (the reader stops there); past a size the
   * server announced, or past the catalog's bound, they mean the server sends another file.
   */
  private within(piece: Uint8Array, received: number): Uint8Array {
    const end = received + piece.length;
    const stated = this.check.size;
    if (stated !== null) return end > stated ? piece.subarray(0, Math.max(0, stated - received)) : piece;
    const total = this.rec.totalBytes;
    if (total !== null && end > total) {
      throw new StoreError('size-mismatch', `${this.rec.weightsUrl}: the server announced ${total} bytes but sent more.`);
    }
    if (this.maxBytes !== null && end > this.maxBytes) {
      throw new StoreError('size-mismatch', `${this.rec.weightsUrl}: more than ${this.maxBytes} bytes arrived before the file's header said its size; this is not the model the catalog names.`);
    }
    return piece;
  }

  /** The sizes the header states, the server announced and the catalog allows must agree. */
  private checkSizes(): void {
    const stated = this.check.size;
    if (stated === null) return;
    const total = this.rec.totalBytes;
    if (total !== null && stated !== total) {
      throw new StoreError('size-mismatch', `${this.rec.weightsUrl}: the server announced ${total} bytes, but the file's header states ${stated}.`);
    }
    if (this.maxBytes !== null && stated > this.maxBytes) {
      throw new StoreError('size-mismatch', `${this.rec.weightsUrl}: the file's header states ${stated} bytes, far more than the catalog's figure for this model.`);
    }
  }

  /** Checks the stored record is still the one this job is writing (not discarded meanwhile). */
  private async current(downloads: { get(id: string): Promise<DownloadRecord | undefined> }): Promise<DownloadRecord> {
    const rec = await downloads.get(this.rec.id);
    if (!rec || rec.fileId !== this.rec.fileId || rec.bytesStored !== this.rec.bytesStored) {
      throw new StoreError('cancelled', 'The download was discarded.');
    }
    return rec;
  }

  private async save(patch: Partial<DownloadRecord>, write?: (tx: Tx<['downloads', 'chunks'], 'readwrite'>) => Promise<unknown>): Promise<void> {
    const next = { ...this.rec, ...patch, updatedAt: this.ctx.now() };
    await runTx(this.ctx, ['downloads', 'chunks'], 'readwrite', async (tx) => {
      await this.current(tx.objectStore('downloads'));
      await write?.(tx);
      await tx.objectStore('downloads').put(next);
    });
    this.rec = next;
  }

  /**
   * Stores one chunk, with the file's size once the header has stated it (for progress and a
   * later resume); the last chunk (possibly short or empty) fixes the size in any case.
   */
  private async commit(bytes: Uint8Array<ArrayBuffer>, last: boolean): Promise<void> {
    const index = this.rec.bytesStored / this.rec.chunkBytes;
    const bytesStored = this.rec.bytesStored + bytes.length;
    const totalBytes = this.rec.totalBytes ?? this.check.size ?? (last ? bytesStored : null);
    this.hasher.update(bytes);
    // put() clones synchronously, so the caller may refill `bytes` once this resolves.
    const value = bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    await this.save({ bytesStored, totalBytes }, bytes.length > 0 ? (tx) => tx.objectStore('chunks').put(value, [this.rec.fileId, index]) : undefined);
    this.checkCancelled();
  }

  /** Records what the response says about the file. */
  private adopt(f: ResponseFacts): Promise<void> {
    const r = this.rec;
    return this.save({ totalBytes: f.total ?? r.totalBytes, sha256: f.sha256 ?? r.sha256, etag: f.etag ?? r.etag });
  }

  /** Drops every stored chunk and what was known about the file, keeping the record. */
  private async reset(): Promise<void> {
    await this.save({ bytesStored: 0, totalBytes: null, sha256: null, etag: null }, (tx) => tx.objectStore('chunks').delete(fileChunks(this.rec.fileId)));
    this.hasher = createSha256();
    this.check = new FileCheck(this.rec.configText);
  }

  private async finish(): Promise<ModelRecord> {
    const size = this.rec.bytesStored;
    this.report.phase('verifying', size, size);
    if (this.rec.totalBytes !== size) {
      throw new StoreError('size-mismatch', `${this.rec.weightsUrl}: received ${size} bytes, the server announced ${this.rec.totalBytes}.`);
    }
    const sha256 = toHex(this.hasher.digest());
    for (const want of [this.rec.sha256, normalizeSha(this.opts.expectedSha256)]) {
      if (want !== null && want !== sha256) {
        throw new StoreError('hash-mismatch', `${this.rec.weightsUrl}: the file's sha256 is ${sha256}, expected ${want}. The download was discarded.`);
      }
    }
    // The whole header against the whole file (a cut-off file never stated its size).
    await checkModel(this.rec.configText, this.source(size));
    if (this.check.fed < size) throw new StoreError('corrupt', `${this.rec.weightsUrl}: only ${this.check.fed} of ${size} bytes were checked.`);
    this.checkCancelled();
    return this.promote(sha256);
  }

  /** Turns the partial download into a stored model, in one transaction. */
  private promote(sha256: string): Promise<ModelRecord> {
    const r = this.rec;
    const now = this.ctx.now();
    const model: ModelRecord = {
      id: r.id,
      name: r.name,
      template: r.template,
      origin: r.origin,
      sourceUrl: r.weightsUrl,
      configText: r.configText,
      fileId: r.fileId,
      size: r.bytesStored,
      chunkBytes: r.chunkBytes,
      sha256,
      addedAt: now,
      lastUsedAt: null,
    };
    return runTx(this.ctx, ['models', 'downloads', 'chunks'], 'readwrite', async (tx) => {
      await this.current(tx.objectStore('downloads'));
      await tx.objectStore('downloads').delete(r.id);
      const existing = await tx.objectStore('models').get(r.id);
      if (existing) {
        // Another tab finished the same model first: keep its copy, drop ours.
        await tx.objectStore('chunks').delete(fileChunks(r.fileId));
        return existing;
      }
      await tx.objectStore('models').put(model);
      return model;
    });
  }
}
