import { StoreError } from './errors.ts';

/**
 * Runs `task` under an exclusive cross-tab lock (Web Locks), failing with 'busy' at once when
 * another tab holds it. Where Web Locks are missing (Node), the caller's in-tab guard is all there is.
 */
export async function withTabLock<T>(name: string, task: () => Promise<T>): Promise<T> {
  const locks = typeof navigator === 'undefined' ? undefined : navigator.locks;
  if (!locks) return task();
  return locks.request(name, { ifAvailable: true }, async (lock) => {
    if (!lock) throw new StoreError('busy', 'This model is already being downloaded in another tab.');
    return task();
  });
}
