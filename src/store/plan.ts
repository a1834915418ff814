import type { StorageInfo } from './storage.ts';
import type { StoreContext } from './tx.ts';
import { runTx } from './tx.ts';

// What the UI needs to ask "download 1.5 GB? you have 3 GB free" before a large download.

export interface DownloadPlan {
  modelId: string;
  /** Already stored: downloading again is a no-op. */
  stored: boolean;
  /** Size of model.safetensors, from the server when it answers a HEAD, else the catalog's figure. */
  bytes: number | null;
  bytesSource: 'server' | 'catalog' | null;
  /** Bytes a partial download already holds. */
  bytesStored: number;
  /** bytes − bytesStored. */
  bytesNeeded: number | null;
  freeBytes: number | null;
  /** false when it will not fit; null when a figure is unknown. */
  fits: boolean | null;
  persisted: boolean | null;
}

const HEAD_TIMEOUT_MS = 10_000;

/** The size the server states for `url`, or null (no answer, CORS, no Content-Length). */
export async function headSize(fetcher: typeof fetch, url: string): Promise<number | null> {
  try {
    const res = await fetcher(url, { method: 'HEAD', signal: AbortSignal.timeout(HEAD_TIMEOUT_MS) });
    if (!res.ok) return null;
    const raw = res.headers.get('x-linked-size') ?? res.headers.get('content-length');
    return raw !== null && /^\d+$/.test(raw.trim()) ? Number(raw) : null;
  } catch {
    return null;
  }
}

export async function planDownload(
  ctx: StoreContext,
  target: { id: string; weightsUrl: string; approxBytes: number | null },
  storage: StorageInfo,
): Promise<DownloadPlan> {
  const [model, pending] = await runTx(ctx, ['models', 'downloads'], 'readonly', (tx) =>
    Promise.all([tx.objectStore('models').get(target.id), tx.objectStore('downloads').get(target.id)]),
  );
  const base = { modelId: target.id, freeBytes: storage.free, persisted: storage.persisted };
  if (model) {
    return { ...base, stored: true, bytes: model.size, bytesSource: null, bytesStored: model.size, bytesNeeded: 0, fits: true };
  }
  const fromServer = await headSize(ctx.fetch, target.weightsUrl);
  const bytes = fromServer ?? pending?.totalBytes ?? target.approxBytes;
  const bytesStored = pending?.bytesStored ?? 0;
  const bytesNeeded = bytes === null ? null : Math.max(0, bytes - bytesStored);
  const fits = bytesNeeded === null || storage.free === null ? null : bytesNeeded <= storage.free;
  // A partial download's total came from the server too, in an earlier session.
  const bytesSource = fromServer !== null || pending?.totalBytes != null ? 'server' : bytes !== null ? 'catalog' : null;
  return { ...base, stored: false, bytes, bytesSource, bytesStored, bytesNeeded, fits };
}
