import type { EngineApi, LoadProgress, ModelInfo } from '../engine/api.ts';
import type { CatalogEntry, ChatTemplateId, DownloadPlan, DownloadProgress, Leftovers, ModelStore, PendingDownload, StorageInfo, StoredModel } from '../store/index.ts';
import type { ModelProvider } from './chat.ts';
import { guessTemplate } from './templates.ts';

// The model picker's logic, on top of the model store (src/store) and the engine: which models
// exist, downloading (with progress, cancel, a size check first), importing files, deleting, and
// loading a model into the engine when a conversation needs it. Like chat.ts it mutates a state
// object the UI hands in (a Svelte $state proxy), and knows nothing of the DOM.

/** What this file uses of the model store (src/store/index.ts); the unit tests pass a fake. */
export type ModelStoreApi = Pick<
  ModelStore,
  'catalog' | 'list' | 'pendingDownloads' | 'planDownload' | 'download' | 'discard' | 'importFiles' | 'delete' | 'estimate' | 'persist' | 'customModel' | 'leftovers' | 'clearLeftovers'
>;

export interface ActiveDownload extends DownloadProgress {
  name: string;
}

export interface ModelsState {
  catalog: CatalogEntry[];
  stored: StoredModel[];
  pending: PendingDownload[];
  downloads: Record<string, ActiveDownload>;
  importing: { name: string; bytesDone: number; bytesTotal: number } | null;
  storage: StorageInfo | null;
  /** Chunks an import left behind when its tab died. */
  leftovers: Leftovers | null;
  /** The model new conversations talk to. */
  currentId: string | null;
  loaded: { modelId: string; workers: number; info: ModelInfo } | null;
  loading: { modelId: string; name: string; phase: LoadProgress['phase'] | 'waiting-for-download'; bytesRead: number; bytesTotal: number } | null;
  error: string | null;
  /** The first listing has arrived. */
  ready: boolean;
}

export function createModelsState(): ModelsState {
  return { catalog: [], stored: [], pending: [], downloads: {}, importing: null, storage: null, leftovers: null, currentId: null, loaded: null, loading: null, error: null, ready: false };
}

/** Downloads above this size ask for confirmation with the size and the free space. */
export const CONFIRM_ABOVE_BYTES = 50e6;
export const BUNDLED_ID = 'shakespeare';
const CURRENT_KEY = 'gpt2-chat:current-model';

export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '?';
  if (n < 1e3) return `${Math.round(n)} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function formatSeconds(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '';
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** Splits dropped or picked files into a config.json and a .safetensors file. */
export function pickModelFiles(files: readonly File[]): { config: File; weights: File; name: string } {
  const config = files.find((f) => f.name.toLowerCase().endsWith('.json'));
  const weights = files.find((f) => f.name.toLowerCase().endsWith('.safetensors'));
  if (!config || !weights) {
    const missing = [!config && 'a config.json', !weights && 'a .safetensors file'].filter(Boolean).join(' and ');
    throw new Error(`Choose both files of the model: ${missing} ${config || weights ? 'is' : 'are'} missing.`);
  }
  // A folder drop gives paths like "gpt2/config.json": name the model after the folder.
  const path = (weights as File & { webkitRelativePath?: string }).webkitRelativePath || '';
  const folder = path.includes('/') ? path.split('/').at(-2) : undefined;
  const base = weights.name.replace(/\.safetensors$/i, '');
  const name = folder || (base === 'model' ? 'Imported model' : base);
  return { config, weights, name };
}

export class ModelManager implements ModelProvider {
  private aborts = new Map<string, AbortController>();
  private downloadsInFlight = new Map<string, Promise<void>>();
  private loadChain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly state: ModelsState,
    private readonly store: ModelStoreApi,
    private readonly engine: EngineApi,
    private readonly storage: Pick<Storage, 'getItem' | 'setItem'> | null = typeof localStorage !== 'undefined' ? localStorage : null,
  ) {}

  /** Lists the models; on the first run, fetches the bundled model from the app's own origin into the store. */
  async init(): Promise<void> {
    this.state.catalog = [...this.store.catalog];
    this.state.currentId = this.storage?.getItem(CURRENT_KEY) ?? null;
    await this.refresh();
    if (this.state.currentId !== null && !this.isStored(this.state.currentId) && !this.catalogEntry(this.state.currentId)) this.state.currentId = null;
    this.state.currentId ??= this.state.stored[0]?.id ?? BUNDLED_ID;
    this.state.ready = true;
    const bundled = this.catalogEntry(BUNDLED_ID);
    if (bundled && !this.isStored(BUNDLED_ID)) void this.download(bundled).catch(() => undefined);
  }

  async refresh(): Promise<void> {
    const [stored, pending, storage, leftovers] = await Promise.all([this.store.list(), this.store.pendingDownloads(), this.store.estimate(), this.store.leftovers()]);
    this.state.stored = stored;
    this.state.pending = pending.filter((p) => !p.active && !(p.id in this.state.downloads));
    this.state.storage = storage;
    this.state.leftovers = leftovers;
  }

  /** Deletes the chunks of imports whose tab died (imports still running are kept). */
  async clearLeftovers(): Promise<void> {
    await this.store.clearLeftovers();
    await this.refresh();
  }

  isStored(id: string): boolean {
    return this.state.stored.some((m) => m.id === id);
  }

  catalogEntry(id: string): CatalogEntry | undefined {
    return this.state.catalog.find((e) => e.id === id);
  }

  nameOf(id: string | null): string {
    if (id === null) return 'No model';
    return this.state.stored.find((m) => m.id === id)?.name ?? this.catalogEntry(id)?.name ?? this.state.pending.find((p) => p.id === id)?.name ?? id;
  }

  defaultModelId(): string | null {
    return this.state.currentId;
  }

  setCurrent(id: string): void {
    this.state.currentId = id;
    this.storage?.setItem(CURRENT_KEY, id);
  }

  templateOf(id: string): ChatTemplateId | null {
    return this.state.stored.find((m) => m.id === id)?.template ?? this.catalogEntry(id)?.template ?? null;
  }

  /** Size and free space, for the confirmation before a large download. */
  plan(entry: CatalogEntry): Promise<DownloadPlan> {
    return this.store.planDownload(entry);
  }

  needsConfirmation(plan: DownloadPlan): boolean {
    return !plan.stored && (plan.bytesNeeded === null || plan.bytesNeeded > CONFIRM_ABOVE_BYTES || plan.fits === false);
  }

  /** Resumes an interrupted download (of a catalog model or a custom URL). */
  resume(p: PendingDownload): Promise<void> {
    const entry = this.catalogEntry(p.id);
    return this.download(entry ?? { id: p.id, name: p.name, description: '', origin: 'custom', baseUrl: '', parameters: null, approxBytes: p.totalBytes, template: p.template }, entry === undefined);
  }

  /** Downloads (or resumes) a model; cancel() stops it and keeps what arrived for a later resume. */
  download(entry: CatalogEntry, byId = false): Promise<void> {
    const running = this.downloadsInFlight.get(entry.id);
    if (running) return running;
    const abort = new AbortController();
    this.aborts.set(entry.id, abort);
    this.state.error = null;
    this.state.downloads[entry.id] = {
      name: entry.name, modelId: entry.id, phase: 'config', bytesDone: 0, bytesTotal: entry.approxBytes, percent: null, bytesPerSecond: 0, secondsLeft: null,
    };
    this.state.pending = this.state.pending.filter((p) => p.id !== entry.id);
    const run = (async () => {
      try {
        await this.store.download(byId ? entry.id : entry, {
          signal: abort.signal,
          onProgress: (p) => {
            this.state.downloads[entry.id] = { ...p, name: entry.name };
          },
        });
      } catch (e) {
        const cancelled = abort.signal.aborted;
        if (!cancelled) this.state.error = `Downloading ${entry.name} failed: ${errorText(e)}`;
        throw cancelled ? new Error(`The download of ${entry.name} was cancelled.`) : e;
      } finally {
        delete this.state.downloads[entry.id];
        this.aborts.delete(entry.id);
        this.downloadsInFlight.delete(entry.id);
        await this.refresh().catch(() => undefined);
      }
    })();
    this.downloadsInFlight.set(entry.id, run);
    return run;
  }

  cancel(id: string): void {
    this.aborts.get(id)?.abort();
  }

  /** Forgets a partial download and its bytes. */
  async discard(id: string): Promise<void> {
    await this.store.discard(id);
    await this.refresh();
  }

  /** Adds a model from a user-supplied https URL (a directory or a Hugging Face repository). */
  customEntry(url: string, template: ChatTemplateId, name?: string): CatalogEntry {
    return this.store.customModel(url, template, name);
  }

  async importFiles(files: readonly File[], template?: ChatTemplateId): Promise<string> {
    this.state.error = null;
    let picked: ReturnType<typeof pickModelFiles>;
    try {
      picked = pickModelFiles(files);
    } catch (e) {
      this.state.error = errorText(e);
      throw e;
    }
    const { config, weights, name } = picked;
    this.state.importing = { name, bytesDone: 0, bytesTotal: weights.size };
    try {
      const rec = await this.store.importFiles(config, weights, name, {
        template: template ?? guessTemplate(name),
        onProgress: (bytesDone, bytesTotal) => {
          this.state.importing = { name, bytesDone, bytesTotal };
        },
      });
      await this.refresh();
      return rec.id;
    } catch (e) {
      this.state.error = `Importing ${name} failed: ${errorText(e)}`;
      throw e;
    } finally {
      this.state.importing = null;
    }
  }

  async remove(id: string): Promise<void> {
    if (this.state.loaded?.modelId === id) {
      await this.engine.unload();
      this.state.loaded = null;
    }
    await this.store.delete(id);
    await this.refresh();
    if (this.state.currentId === id) this.setCurrent(this.state.stored[0]?.id ?? BUNDLED_ID);
  }

  async persist(): Promise<boolean | null> {
    const granted = await this.store.persist();
    this.state.storage = await this.store.estimate();
    return granted;
  }

  /** Makes `modelId` the engine's model with `workers` shard workers; loads one at a time. */
  ensureLoaded(modelId: string, workers: number): Promise<ModelInfo> {
    const next = this.loadChain.catch(() => undefined).then(() => this.load(modelId, workers));
    this.loadChain = next;
    return next;
  }

  private async load(modelId: string, workers: number): Promise<ModelInfo> {
    const l = this.state.loaded;
    if (l && l.modelId === modelId && l.workers === workers) return l.info;
    const name = this.nameOf(modelId);
    this.state.error = null;
    try {
      if (!this.isStored(modelId)) {
        const entry = this.catalogEntry(modelId);
        const inFlight = this.downloadsInFlight.get(modelId);
        if (inFlight || entry?.origin === 'bundled') {
          this.state.loading = { modelId, name, phase: 'waiting-for-download', bytesRead: 0, bytesTotal: 0 };
          await (inFlight ?? this.download(entry!));
        } else {
          throw new Error(`${name} is not downloaded yet: open Models to download it.`);
        }
      }
      this.state.loading = { modelId, name, phase: 'reading', bytesRead: 0, bytesTotal: 0 };
      if (this.state.loaded) {
        this.state.loaded = null;
        await this.engine.unload();
      }
      const info = await this.engine.load({ location: { kind: 'stored', modelId }, workers }, (p) => {
        this.state.loading = { modelId, name, phase: p.phase, bytesRead: p.bytesRead, bytesTotal: p.bytesTotal };
      });
      this.state.loaded = { modelId, workers, info };
      return info;
    } catch (e) {
      this.state.error = `Loading ${name} failed: ${errorText(e)}`;
      throw new Error(`Loading ${name} failed: ${errorText(e)}`, { cause: e });
    } finally {
      this.state.loading = null;
    }
  }
}

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
