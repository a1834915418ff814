import { availableParallelism } from 'node:os';
import type { Decoder } from '../engine/decoder.ts';
import { createPoolDecoder, defaultWorkerCount } from '../engine/pool-decoder.ts';
import { createReferenceDecoder } from '../engine/reference.ts';
import { planShards } from '../engine/shard-plan.ts';
import { loadWeights } from '../engine/weights.ts';
import type { SyncMode } from '../engine/worker-pool.ts';
import { openModelDir } from './model-dir.ts';
import { spawnNodeShard } from './spawn-node.ts';

/**
 * Loads a model directory into a decoder: `workers` = 0 for the single-thread reference,
 * N > 0 for a pool of N shard workers, -1 for the default pool size (one per core).
 */
export async function openDecoder(dir: string, workers: number, sync: SyncMode = 'atomics'): Promise<Decoder> {
  const model = await openModelDir(dir);
  try {
    if (workers === 0) return createReferenceDecoder(await loadWeights(model.config, model.source, planShards(model.config, 1)));
    const n = workers < 0 ? defaultWorkerCount(availableParallelism()) : workers;
    return await createPoolDecoder(model.config, model.source, { workers: n, sync, spawn: spawnNodeShard });
  } finally {
    await model.close();
  }
}
