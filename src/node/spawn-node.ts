import { Worker } from 'node:worker_threads';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { SpawnedWorker, SpawnShard } from '../engine/pool-protocol.ts';
import { failureSignal } from '../engine/pool-protocol.ts';

// Shard workers as worker_threads. A small bootstrap registers tsx in the new thread and imports
// the TypeScript worker, so Node and the browser execute the same file.
const bootstrap = new URL('../../workers/node-bootstrap.mjs', import.meta.url);
const entry = new URL('../../workers/shard.worker.ts', import.meta.url).href;

export const spawnNodeShard: SpawnShard = (): SpawnedWorker => {
  const worker = new Worker(bootstrap, { workerData: { entry } });
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
};
