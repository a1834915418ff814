import type { SpawnedWorker, SpawnShard } from './pool-protocol.ts';
import { failureSignal } from './pool-protocol.ts';

/** Shard workers as module Web Workers (Vite bundles workers/shard.worker.ts from this URL). */
export const spawnBrowserShard: SpawnShard = (): SpawnedWorker => {
  const worker = new Worker(new URL('../../workers/shard.worker.ts', import.meta.url), { type: 'module', name: 'shard' });
  const failure = failureSignal();
  worker.addEventListener('error', (e) => failure.fail(`worker error: ${e.message || 'failed to load'}`));
  worker.addEventListener('messageerror', () => failure.fail('worker sent a message that could not be read'));
  return {
    endpoint: worker,
    onFailure: failure.onFailure,
    terminate: () => {
      failure.silence();
      worker.terminate();
    },
  };
};
