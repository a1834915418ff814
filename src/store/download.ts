import type { ByteSource } from '../engine/weights.ts';
import { chunkSource } from './chunks.ts';
import type { DownloadRecord, DownloadTarget, ModelRecord } from './db.ts';
import { StoreError, cancelled } from './errors.ts';
import type { ResponseFacts } from './http.ts';
import { fetchFailure, fetchOrFail, httpError, responseFacts } from './http.ts';
import { randomId } from './ids.ts';
import type { DownloadProgress } from './progress.ts';
import { ProgressReporter } from './progress.ts';
import { createSha256, toHex } from './sha256.ts';
import type { StoreContext, Tx } from './tx.ts';
import { fileChunks, runTx } from './tx.ts';
import { checkConfig, checkHeader, checkModel, headerBytesNeeded } from './validate.ts';

// Streams model.safetensors into IndexedDB chunk by chunk. Only whole chunks are committed, each
// in one transaction with the download record's byte count, so an interrupted download (closed
// tab, dropped connection, cancel, full disk) always resumes from a consistent chunk boundary.
// A file that fails a check (size, sha256, parser) is discarded; nothing else is ever touched.

export type { DownloadTarget } from './db.ts';

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (p: DownloadProgress) => void;
  /** Checked in addition to any sha256 the server announces (lowercase or uppercase hex). */
  expectedSha256?: string;
}

/** Failures that condemn the file itself: resuming would only fetch the same bad bytes. */
const FATAL = new Set(['size-mismatch', 'hash-mismatch', 'invalid-model']);

/** Downloads (or resumes) a model; resolves with the stored model, at once if already stored. */
export async function downloadModel(ctx: StoreContext, target: DownloadTarget, opts: DownloadOptions = {}): Promise<ModelRecord> {
  const stored = await runTx(ctx, ['models'], 'readonly', (tx) => tx.store.get(target.id));
  if (stored) return stored;
  const report = new ProgressReporter(target.id, opts.onProgress, ctx.now);
  const pending = await runTx(ctx, ['downloads'], 'readonly', (tx) => tx.store.get(target.id));
  const rec = pending ? { ...pending, configUrl: target.configUrl, weightsUrl: target.weightsUrl } : await begin(ctx, target, opts, report);
  return new DownloadJob(ctx, rec, opts, report).run();
}

/** Fetches and checks config.json, then records the download; nothing is stored if the config is bad. */
async function begin(ctx: StoreContext, target: DownloadTarget, opts: DownloadOptions, report: ProgressReporter): Promise<DownloadRecord> {
  report.phase('config', 0, null);
  const res = await fetchOrFail(ctx.fetch, target.configUrl, { signal: opts.signal });
  if (!res.ok) throw httpError(res);
  let configText: string;
  try {
    configText = await res.text();
  } catch (e) {
    throw fetchFailure(e, opts.signal, target.configUrl);
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
  private headerChecked = false;
  private readonly signal: AbortSignal | undefined;

  constructor(
    private readonly ctx: StoreContext,
    private rec: DownloadRecord,
    private readonly opts: DownloadOptions,
    private readonly report: ProgressReporter,
  ) {
    this.signal = opts.signal;
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

  /** Feeds the chunks stored by an earlier session to the hasher, as WebCrypto cannot resume a digest. */
  private async rehash(): Promise<void> {
    const { bytesStored, chunkBytes, totalBytes } = this.rec;
    if (bytesStored === 0) return;
    const source = this.source(bytesStored);
    try {
      for (let at = 0; at < bytesStored; at += chunkBytes) {
        this.checkCancelled();
        this.report.phase('rehash', at, totalBytes);
        this.hasher.update(await source.read(at, Math.min(bytesStored, at + chunkBytes)));
      }
    } catch (e) {
      if (!(e instanceof StoreError && e.code === 'corrupt')) throw e;
      await this.reset(); // a partial download with holes is not worth keeping
    }
  }

  private request(from: number): Promise<Response> {
    const headers: Record<string, string> = from > 0 ? { Range: `bytes=${from}-` } : {};
    return fetchOrFail(this.ctx.fetch, this.rec.weightsUrl, { headers, signal: this.signal });
  }

  /** Facts of a 200/206 response, or null for 416 (the range we asked for is gone). */
  private facts(res: Response, from: number): ResponseFacts | null {
    return res.status === 416 ? null : responseFacts(res, from);
  }

  private changedUpstream(f: ResponseFacts): boolean {
    const differs = <T>(a: T | null, b: T | null): boolean => a !== null && b !== null && a !== b;
    return differs(this.rec.totalBytes, f.total) || differs(this.rec.sha256, f.sha256) || differs(this.rec.etag, f.etag);
  }

  private async transfer(): Promise<void> {
    const from = this.rec.bytesStored;
    let res = await this.request(from);
    let facts = this.facts(res, from);
    if (!facts || facts.start !== from || this.changedUpstream(facts)) {
      // The server ignored the Range (200), no longer has it (416), or the file changed: start over.
      await this.reset();
      if (!facts || facts.start !== 0) {
        await res.body?.cancel().catch(() => undefined);
        res = await this.request(0);
        facts = responseFacts(res, 0);
        if (facts.start !== 0) throw new StoreError('http', `${this.rec.weightsUrl}: the server sent bytes from ${facts.start} instead of the whole file.`);
      }
    }
    await this.adopt(facts);
    this.report.phase('downloading', this.rec.bytesStored, this.rec.totalBytes);
    await this.stream(res);
  }

  /** Reads the body into fixed-size chunks, committing each as soon as it is full. */
  private async stream(res: Response): Promise<void> {
    if (!res.body) throw new StoreError('http', `${this.rec.weightsUrl}: the response has no body.`);
    const reader = res.body.getReader();
    const buf = new Uint8Array(this.rec.chunkBytes);
    let fill = 0;
    try {
      for (let piece = await this.read(reader); piece; piece = await this.read(reader)) {
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
        this.checkOverrun(this.rec.bytesStored + fill);
        this.report.received(this.rec.bytesStored + fill, this.rec.totalBytes);
      }
      await this.commit(buf.subarray(0, fill), true);
    } catch (e) {
      reader.cancel().catch(() => undefined);
      throw e;
    }
    this.report.received(this.rec.bytesStored, this.rec.totalBytes, true);
  }

  private async read(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Uint8Array | null> {
    try {
      const r = await reader.read();
      return r.done ? null : r.value;
    } catch (e) {
      throw fetchFailure(e, this.signal, this.rec.weightsUrl);
    }
  }

  private checkOverrun(received: number): void {
    const total = this.rec.totalBytes;
    if (total !== null && received > total) {
      throw new StoreError('size-mismatch', `${this.rec.weightsUrl}: the server announced ${total} bytes but sent more.`);
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

  /** Stores one chunk; the last one (possibly short or empty) also fixes the total size. */
  private async commit(bytes: Uint8Array<ArrayBuffer>, last: boolean): Promise<void> {
    const index = this.rec.bytesStored / this.rec.chunkBytes;
    const bytesStored = this.rec.bytesStored + bytes.length;
    const patch: Partial<DownloadRecord> = last ? { bytesStored, totalBytes: this.rec.totalBytes ?? bytesStored } : { bytesStored };
    this.hasher.update(bytes);
    // put() clones synchronously, so the caller may refill `bytes` once this resolves.
    const value = bytes.byteLength === bytes.buffer.byteLength ? bytes.buffer : bytes.slice().buffer;
    await this.save(patch, bytes.length > 0 ? (tx) => tx.objectStore('chunks').put(value, [this.rec.fileId, index]) : undefined);
    this.checkCancelled();
    await this.checkHeaderEarly();
  }

  /** Rejects a wrong file as soon as its header is stored instead of after the whole download. */
  private async checkHeaderEarly(): Promise<void> {
    const { bytesStored, totalBytes, configText } = this.rec;
    if (this.headerChecked || bytesStored < 8) return;
    const source = this.source(bytesStored);
    const need = await headerBytesNeeded(await source.read(0, 8));
    if (need > bytesStored) return;
    const stated = await checkHeader(configText, await source.read(0, need));
    if (totalBytes !== null && stated !== totalBytes) {
      throw new StoreError('size-mismatch', `${this.rec.weightsUrl}: the server announced ${totalBytes} bytes, but the file's header states ${stated}.`);
    }
    this.headerChecked = true;
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
    this.headerChecked = false;
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
    await checkModel(this.rec.configText, this.source(size));
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
