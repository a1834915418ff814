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

/**
 * Runs `task` holding the Web Lock `name` (waiting for it if another context holds it), so other
 * tabs can see the work is alive; the browser releases it if this tab dies. Without Web Locks
 * (Node) it just runs `task`.
 */
export async function holdingLock<T>(name: string, task: () => Promise<T>): Promise<T> {
  const locks = typeof navigator === 'undefined' ? undefined : navigator.locks;
  if (!locks) return task();
  return locks.request(name, () => task());
}
