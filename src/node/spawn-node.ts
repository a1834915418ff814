import { Worker } from 'node:worker_threads';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { SpawnedWorker, SpawnShard } from '../engine/pool-protocol.ts';
import { failureSignal } from '../engine/pool-protocol.ts';

// Shard workers as worker_threads. A small bootstrap registers tsx in the new thread and imports
// the TypeScript worker, so Node and the browser execute the same file.
const BOOTSTRAP = new URL('../../workers/node-bootstrap.mjs', import.meta.url);
export const SHARD_WORKER = new URL('../../workers/shard.worker.ts', import.meta.url);

/** Starts the TypeScript worker module `entry` as a worker thread; `data` reaches it as workerData. */
export function startNodeWorker(entry: URL, data: Record<string, unknown> = {}): Worker {
  return new Worker(BOOTSTRAP, { workerData: { ...data, entry: entry.href } });
}

/** A worker thread as the pool sees it: a Comlink endpoint, its failures, and a way to stop it. */
export function asSpawnedWorker(worker: Worker): SpawnedWorker {
  const failure = failureSignal();
  worker.on('error', (e) => failure.fail(`worker error: ${e.message}`));
  worker.on('exit', (code) => failure.fail(`worker exited with code ${code}`));
  return {
    endpoint: nodeEndpoint(worker),
    onFailure: failure.onFailure,
    terminate: async () => {
      failure.silence(); // an exit we asked for is not a failure
      await worker.terminate();
    },
  };
}

export const spawnNodeShard: SpawnShard = () => asSpawnedWorker(startNodeWorker(SHARD_WORKER));
