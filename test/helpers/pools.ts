import type { Worker } from 'node:worker_threads';
import { Coordinator } from '../../src/engine/coordinator.ts';
import { jsKernels } from '../../src/engine/kernels.ts';
import type { SpawnShard } from '../../src/engine/pool-protocol.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import { allocateShared, loadWeights } from '../../src/engine/weights.ts';
import type { PoolOptions } from '../../src/engine/worker-pool.ts';
import { WorkerPool } from '../../src/engine/worker-pool.ts';
import { openModelDir } from '../../src/node/model-dir.ts';
import { asSpawnedWorker, SHARD_WORKER, spawnNodeShard, startNodeWorker } from '../../src/node/spawn-node.ts';
import type { Fault } from './faulty-shard.worker.ts';
import { TINY } from './fixtures.ts';

const FAULTY = new URL('./faulty-shard.worker.ts', import.meta.url);

/** A worker pool on the tiny model with the coordinator over it, both in reach of the test. */
export async function tinyPool(workers: number, spawn: SpawnShard = spawnNodeShard, options: Partial<PoolOptions> = {}): Promise<{ pool: WorkerPool; decoder: Coordinator }> {
  const m = await openModelDir(TINY);
  const plan = planShards(m.config, workers);
  const weights = await loadWeights(m.config, m.source, plan, allocateShared).finally(() => m.close());
  const pool = await WorkerPool.start(m.config, plan, weights, spawn, { sync: 'atomics', ...options });
  return { pool, decoder: new Coordinator(m.config, weights.common, pool, jsKernels) };
}

/** Spawns shard workers one of which fails once as `fault` says (test/helpers/faulty-shard.worker.ts). */
export function faultySpawner(fault: Omit<Fault, 'armed'>): SpawnShard {
  const armed = new Int32Array(new SharedArrayBuffer(4));
  armed[0] = 1;
  return () => asSpawnedWorker(startNodeWorker(FAULTY, { fault: { ...fault, armed } }));
}

/** Spawns real shard workers and keeps their threads, so a test can kill one as a crash would. */
export function killableSpawner(): { spawn: SpawnShard; threads: Worker[] } {
  const threads: Worker[] = [];
  return {
    threads,
    spawn: () => {
      const w = startNodeWorker(SHARD_WORKER);
      threads.push(w);
      return asSpawnedWorker(w);
    },
  };
}
