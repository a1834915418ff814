import type { CatalogEntry, ChatTemplateId } from './catalog.ts';
import { CATALOG, catalogEntry, customModel, modelFileUrls } from './catalog.ts';
import { DEFAULT_DB_NAME, openStoreDb } from './db.ts';
import type { DownloadOptions, DownloadTarget } from './download.ts';
import { discardDownload, downloadModel } from './download.ts';
import { StoreError } from './errors.ts';
import type { ImportOptions } from './import.ts';
import { importModel } from './import.ts';
import { withTabLock } from './lock.ts';
import type { OpenedModel, PendingDownload, StoredModel } from './models.ts';
import { deleteModel, describeModel, listModels, listPending, openModel } from './models.ts';
import type { DownloadPlan } from './plan.ts';
import { planDownload } from './plan.ts';
import type { StorageInfo, StorageLike } from './storage.ts';
import { browserStorage, estimateStorage, persistStorage } from './storage.ts';
import type { Leftovers } from './sweep.ts';
import { findLeftovers, sweepOrphans } from './sweep.ts';
import type { StoreContext } from './tx.ts';
import { runTx } from './tx.ts';

// The model store as the UI and the engine worker use it. Runs unchanged in a page, a worker
// and Node (with fake-indexeddb): it needs IndexedDB, fetch and crypto.getRandomValues only.

export type { CatalogEntry, ChatTemplateId, ModelOrigin } from './catalog.ts';
export { CATALOG, customModel } from './catalog.ts';
export type { DownloadOptions } from './download.ts';
export type { StoreErrorCode } from './errors.ts';
export { StoreError } from './errors.ts';
export type { ImportOptions } from './import.ts';
export type { OpenedModel, PendingDownload, StoredModel } from './models.ts';
export type { DownloadPlan } from './plan.ts';
export type { DownloadPhase, DownloadProgress } from './progress.ts';
export type { StorageInfo, StorageLike } from './storage.ts';
export type { Leftovers } from './sweep.ts';

export interface ModelStoreOptions {
  /** Default: the global indexedDB. Tests pass a fresh fake-indexeddb factory. */
  indexedDB?: IDBFactory;
  dbName?: string;
  /**
   * Absolute URL the bundled model's relative directory is resolved against. Default: Vite's
   * BASE_URL resolved against the current location, which is right in the page and in a worker
   * as long as BASE_URL is an absolute path (the default '/').
   */
  appBaseUrl?: string | null;
  /** Chunk size of new files; default 4 MiB. */
  chunkBytes?: number;
  /**
   * A download that receives no byte for this long fails as 'stalled' and stays resumable.
   * Default 30 s, or VITE_DOWNLOAD_STALL_MS when the app is built with it (the browser tests).
   */
  stallTimeoutMs?: number;
  fetch?: typeof fetch;
  /** Default: navigator.storage; null: no storage information. */
  storage?: StorageLike | null;
  /** Called when another tab's upgrade or the browser closes the database under this store. */
  onClosed?: (reason: StoreError) => void;
  now?: () => number;
}

const DEFAULT_CHUNK_BYTES = 4 << 20;
const DEFAULT_STALL_MS = Number(import.meta.env?.VITE_DOWNLOAD_STALL_MS) || 30_000;
/** A catalog model's file may be up to this many times its (rounded) catalog size. */
const CATALOG_SLACK = 2;

function defaultAppBaseUrl(): string | null {
  if (typeof location === 'undefined') return null;
  return new URL(import.meta.env?.BASE_URL ?? '/', location.href).href;
}

interface ActiveDownload {
  controller: AbortController;
  settled: Promise<unknown>;
}

export class ModelStore {
  private readonly active = new Map<string, ActiveDownload>();

  private constructor(
    private readonly ctx: StoreContext,
    private readonly dbName: string,
    private readonly appBaseUrl: string | null,
    private readonly storage: StorageLike | null,
  ) {}

  /** Opens (creating or upgrading) the store; rejects with StoreError 'blocked' or 'unsupported'. */
  static async open(options: ModelStoreOptions = {}): Promise<ModelStore> {
    const factory = options.indexedDB ?? (typeof indexedDB === 'undefined' ? undefined : indexedDB);
    if (!factory) throw new StoreError('unsupported', 'This browser cannot store models: IndexedDB is unavailable (private browsing?).');
    const dbName = options.dbName ?? DEFAULT_DB_NAME;
    let store: ModelStore | undefined;
    const db = await openStoreDb(factory, dbName, {
      onClosed: (reason) => {
        store?.shutDown(reason);
        options.onClosed?.(reason);
      },
    });
    const ctx: StoreContext = {
      db,
      dbName,
      closed: null,
      now: options.now ?? Date.now,
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      chunkBytes: options.chunkBytes ?? DEFAULT_CHUNK_BYTES,
      stallMs: options.stallTimeoutMs ?? DEFAULT_STALL_MS,
    };
    const appBaseUrl = options.appBaseUrl === undefined ? defaultAppBaseUrl() : options.appBaseUrl;
    store = new ModelStore(ctx, dbName, appBaseUrl, options.storage === undefined ? browserStorage() : options.storage);
    await sweepOrphans(ctx).catch(() => 0); // housekeeping only: a failure must not stop the app
    return store;
  }

  /** Closes the connection; downloads in progress stop and stay resumable. */
  close(): void {
    this.shutDown(new StoreError('closed', 'The model store was closed.'));
  }

  private shutDown(reason: StoreError): void {
    if (this.ctx.closed) return;
    this.ctx.closed = reason;
    for (const a of this.active.values()) a.controller.abort();
    this.ctx.db.close();
  }

  get catalog(): readonly CatalogEntry[] {
    return CATALOG;
  }

  /** A catalog entry for a user-supplied https URL; throws StoreError 'bad-url'. */
  customModel(url: string, template: ChatTemplateId, name?: string): CatalogEntry {
    return customModel(url, template, name);
  }

  list(): Promise<StoredModel[]> {
    return listModels(this.ctx);
  }

  /** Partial downloads (interrupted, or running in this tab when `active`): resume with download(id). */
  async pendingDownloads(): Promise<Array<PendingDownload & { active: boolean }>> {
    return (await listPending(this.ctx)).map((p) => ({ ...p, active: this.active.has(p.id) }));
  }

  /** Size, space already used by a partial download, and free space, to confirm a large download. */
  async planDownload(model: CatalogEntry | string): Promise<DownloadPlan> {
    const target = await this.target(model);
    return planDownload(this.ctx, target, await this.estimate());
  }

  /**
   * Downloads a model, or resumes its partial download; resolves at once if it is stored already.
   * Rejects with StoreError: 'cancelled', 'network', 'stalled', 'redirect', 'policy' and 'http'
   * keep the partial download for a later call; 'hash-mismatch', 'size-mismatch' and
   * 'invalid-model' discard it.
   */
  async download(model: CatalogEntry | string, options: DownloadOptions = {}): Promise<StoredModel> {
    const target = await this.target(model);
    if (this.active.has(target.id)) throw new StoreError('busy', `"${target.name}" is already being downloaded.`);
    const controller = new AbortController();
    const unlink = follow(options.signal, controller);
    const maxBytes = catalogEntry(target.id)?.approxBytes ?? null;
    const job = withTabLock(`${this.dbName}:download:${target.id}`, () =>
      downloadModel(this.ctx, target, { ...options, signal: controller.signal }, maxBytes === null ? null : CATALOG_SLACK * maxBytes),
    );
    this.active.set(target.id, { controller, settled: job.catch(() => undefined) });
    try {
      return describeModel(await job);
    } finally {
      this.active.delete(target.id);
      unlink();
    }
  }

  /** Stops a download of this tab; it stays resumable. False when none was running. */
  cancel(modelId: string): boolean {
    const a = this.active.get(modelId);
    a?.controller.abort();
    return a !== undefined;
  }

  /** Stops and deletes a partial download. False when there was none. */
  async discard(modelId: string): Promise<boolean> {
    const a = this.active.get(modelId);
    if (a) {
      a.controller.abort();
      await a.settled;
    }
    return discardDownload(this.ctx, modelId);
  }

  /** Stores a model from local files; both are validated before anything is written. */
  async importFiles(config: Blob, weights: Blob, name: string, options: ImportOptions = {}): Promise<StoredModel> {
    return describeModel(await importModel(this.ctx, config, weights, name, options));
  }

  /**
   * What unfinished imports left behind (a tab closed mid-import): the store sweeps it when it
   * opens, but a tab that dies while this one is open leaves chunks that count against the quota.
   */
  leftovers(): Promise<Leftovers> {
    return findLeftovers(this.ctx);
  }

  /** Deletes what leftovers() counts; imports still running (here or in another tab) are kept. */
  async clearLeftovers(): Promise<void> {
    await sweepOrphans(this.ctx);
  }

  /** Deletes a stored model and its data. False when there was no such model. */
  delete(modelId: string): Promise<boolean> {
    return deleteModel(this.ctx, modelId);
  }

  estimate(): Promise<StorageInfo> {
    return estimateStorage(this.storage);
  }

  /** Asks the browser not to evict stored models; null where that cannot be asked (workers, Node). */
  persist(): Promise<boolean | null> {
    return persistStorage(this.storage);
  }

  /** For the engine worker: config, template and a ByteSource to hand to loadWeights. */
  openStoredModel(modelId: string): Promise<OpenedModel> {
    return openModel(this.ctx, modelId);
  }

  /** Resolves a catalog entry, a catalog id, or the id of a partial download. */
  private async target(model: CatalogEntry | string): Promise<DownloadTarget & { approxBytes: number | null }> {
    const entry = typeof model === 'string' ? catalogEntry(model) : model;
    if (entry) {
      const urls = modelFileUrls(entry, this.appBaseUrl);
      const { id, name, template, origin, approxBytes } = entry;
      return { id, name, template, origin, approxBytes, configUrl: urls.config, weightsUrl: urls.weights };
    }
    const id = model as string;
    const pending = await runTx(this.ctx, ['downloads'], 'readonly', (tx) => tx.store.get(id));
    if (!pending) throw new StoreError('not-found', `No catalog model or partial download "${id}".`);
    const { name, template, origin, configUrl, weightsUrl, totalBytes } = pending;
    return { id, name, template, origin, configUrl, weightsUrl, approxBytes: totalBytes };
  }
}

/** Makes `controller` abort when `signal` does; returns the unsubscribe. */
function follow(signal: AbortSignal | undefined, controller: AbortController): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) controller.abort();
  const onAbort = (): void => controller.abort();
  signal.addEventListener('abort', onAbort, { once: true });
  return () => signal.removeEventListener('abort', onAbort);
}

let shared: Promise<ModelStore> | null = null;

/**
 * The engine worker's entry point: opens the default store once and returns what loadWeights
 * needs. Reopens if an upgrade in another tab closed the previous connection.
 */
export async function openStoredModel(modelId: string): Promise<OpenedModel> {
  shared ??= ModelStore.open({ onClosed: () => (shared = null) });
  const store = await shared.catch((e: unknown) => {
    shared = null;
    throw e;
  });
  return store.openStoredModel(modelId);
}
