import type { SpawnedWorker, SpawnShard } from './pool-protocol.ts';

/** Shard workers as module Web Workers (Vite bundles workers/shard.worker.ts from this URL). */
export const spawnBrowserShard: SpawnShard = (): SpawnedWorker => {
  const worker = new Worker(new URL('../../workers/shard.worker.ts', import.meta.url), { type: 'module', name: 'shard' });
  let listener: ((reason: string) => void) | null = null;
  let failed = false;
  const fail = (reason: string): void => {
    if (failed) return;
    failed = true;
    listener?.(reason);
  };
  worker.addEventListener('error', (e) => fail(`worker error: ${e.message || 'failed to load'}`));
  worker.addEventListener('messageerror', () => fail('worker sent a message that could not be read'));
  return {
    endpoint: worker,
    onFailure: (l) => {
      listener = l;
    },
    terminate: () => {
      failed = true;
      worker.terminate();
    },
  };
};
