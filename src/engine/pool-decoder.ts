import type { GPT2Config } from './config.ts';
import { Coordinator } from './coordinator.ts';
import { jsKernels } from './kernels.ts';
import type { SpawnShard } from './pool-protocol.ts';
import { planShards } from './shard-plan.ts';
import type { ByteSource, LoadProgress } from './weights.ts';
import { allocateShared, loadWeights } from './weights.ts';
import type { PoolOptions } from './worker-pool.ts';
import { WorkerPool } from './worker-pool.ts';

export interface PoolDecoderOptions extends Partial<PoolOptions> {
  workers: number;
  spawn: SpawnShard;
  onProgress?: (p: LoadProgress) => void;
}

/**
 * Loads a checkpoint straight into per-shard SharedArrayBuffers and starts one worker per shard;
 * the returned coordinator runs on the calling thread (the engine worker, in a browser).
 */
export async function createPoolDecoder(config: GPT2Config, source: ByteSource, o: PoolDecoderOptions): Promise<Coordinator> {
  const plan = planShards(config, o.workers);
  const weights = await loadWeights(config, source, plan, allocateShared, o.onProgress);
  const pool = await WorkerPool.start(config, plan, weights, o.spawn, { ...o, sync: o.sync ?? 'atomics' });
  return new Coordinator(config, weights.common, pool, jsKernels);
}

/** One shard worker per core: the coordinator sleeps while they run, so no core is oversubscribed. */
export function defaultWorkerCount(cores: number): number {
  return Math.max(1, Math.min(cores, 16));
}
