import type { GPT2Config } from './config.ts';
import { Coordinator } from './coordinator.ts';
import type { ShardGroup } from './coordinator.ts';
import type { DecoderMode } from './decoder.ts';
import type { Kernels } from './kernels.ts';
import { jsKernels } from './kernels.ts';
import { KVCache } from './kv-cache.ts';
import { MAX_ROWS, Shard } from './shard.ts';
import type { ShardSlice } from './shard-plan.ts';
import { planShards } from './shard-plan.ts';
import type { LoadedWeights } from './weights.ts';

/** Shards that run one after another on the calling thread. */
export class LocalShardGroup implements ShardGroup {
  readonly input: Float32Array;
  readonly partials: Float32Array[];
  readonly logits: Float32Array;
  readonly shards: Shard[];
  /** In-process shards never lose their caches. */
  readonly generation = 0;

  constructor(
    config: GPT2Config,
    plan: ShardSlice[],
    weights: LoadedWeights,
    kernels: Kernels,
    readonly mode: DecoderMode,
  ) {
    const d = config.nEmbd;
    this.input = new Float32Array(MAX_ROWS * d);
    this.logits = new Float32Array(config.vocabSize);
    this.partials = plan.map(() => new Float32Array(MAX_ROWS * d));
    this.shards = plan.map((slice, s) => {
      const cache = new KVCache(config, slice.heads[1] - slice.heads[0], (n) => new Float32Array(n));
      const io = { input: this.input, partial: this.partials[s], logits: this.logits };
      return new Shard(config, slice, weights.shards[s], weights.common, cache, io, kernels);
    });
  }

  attention(T: number, pos: number, layer: number): void {
    for (const s of this.shards) s.attention(T, pos, layer);
  }
  mlp(T: number, layer: number): void {
    for (const s of this.shards) s.mlp(T, layer);
  }
  logitsOfFirstRow(): void {
    for (const s of this.shards) s.logits();
  }
  async dispose(): Promise<void> {}
}

/**
 * The single-thread reference engine: the whole model as one shard on the calling thread.
 * `weights` must have been loaded with the plan `planShards(config, shards)`.
 */
export function createReferenceDecoder(
  weights: LoadedWeights,
  shards = 1,
  kernels: Kernels = jsKernels,
  mode: DecoderMode = { kind: 'reference', workers: 0, sync: 'none', sharedMemory: false },
): Coordinator {
  const plan = planShards(weights.config, shards);
  if (weights.shards.length !== shards) throw new RangeError(`weights were loaded for ${weights.shards.length} shards, not ${shards}`);
  return new Coordinator(weights.config, weights.common, new LocalShardGroup(weights.config, plan, weights, kernels, mode), kernels);
}
