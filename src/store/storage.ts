// Wrappers over navigator.storage, which Node lacks and workers only partly have (persist() is
// window-only): every figure is null when the platform cannot tell.

export interface StorageLike {
  estimate(): Promise<StorageEstimate>;
  persist?(): Promise<boolean>;
  persisted?(): Promise<boolean>;
}

export interface StorageInfo {
  usage: number | null;
  quota: number | null;
  /** quota − usage: what this origin may still store. */
  free: number | null;
  /** Whether the browser promised not to evict this origin's data under storage pressure. */
  persisted: boolean | null;
}

export function browserStorage(): StorageLike | null {
  return typeof navigator !== 'undefined' && navigator.storage ? navigator.storage : null;
}

export async function estimateStorage(storage: StorageLike | null): Promise<StorageInfo> {
  const info: StorageInfo = { usage: null, quota: null, free: null, persisted: null };
  if (!storage) return info;
  try {
    const e = await storage.estimate();
    info.usage = e.usage ?? null;
    info.quota = e.quota ?? null;
    if (info.usage !== null && info.quota !== null) info.free = Math.max(0, info.quota - info.usage);
    if (typeof storage.persisted === 'function') info.persisted = await storage.persisted();
  } catch {
    // Some browsers throw in private mode; unknown is the honest answer.
  }
  return info;
}

/** Asks the browser to keep the models under storage pressure; null where it cannot be asked. */
export async function persistStorage(storage: StorageLike | null): Promise<boolean | null> {
  if (!storage || typeof storage.persist !== 'function') return null;
  try {
    return await storage.persist();
  } catch {
    return null;
  }
}
