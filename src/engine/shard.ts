import type { GPT2Config } from './config.ts';
import { headDim } from './config.ts';
import type { Kernels } from './kernels.ts';
import type { KVCache } from './kv-cache.ts';
import type { ShardLayout, ShardSlice } from './shard-plan.ts';
import { commonLayout, shardLayout } from './shard-plan.ts';

/** Rows per forward call: longer prompts are prefilled in chunks, which bounds every scratch buffer. */
export const MAX_ROWS = 128;

/** The buffers a shard shares with the coordinator: SharedArrayBuffer-backed in the worker pool. */
export interface ShardIO {
  /** [MAX_ROWS, d]: the normalized residual stream the coordinator hands to every shard. */
  input: Float32Array;
  /** [MAX_ROWS, d]: this shard's partial output, summed by the coordinator. */
  partial: Float32Array;
  /** [vocab]: every shard writes its own slice of the logits. */
  logits: Float32Array;
}

interface LayerViews {
  qkvW: Float32Array; qkvB: Float32Array; projW: Float32Array;
  fcW: Float32Array; fcB: Float32Array; fc2W: Float32Array;
}

/**
 * One shard's share of every layer: a contiguous run of attention heads with their KV cache,
 * a slice of the MLP's hidden units, and a slice of the vocabulary for the unembedding.
 * Each method reads the normalized residual stream and writes a partial result the coordinator adds up.
 */
export class Shard {
  readonly layout: ShardLayout;
  private readonly layers: LayerViews[];
  private readonly heads: number;
  private readonly hd: number;
  private readonly d: number;
  // Scratch, sized once for MAX_ROWS rows.
  private readonly qkv: Float32Array; // [T, 3w]
  private readonly att: Float32Array; // [T, w]
  private readonly hidden: Float32Array; // [T, m]
  private readonly scores: Float32Array; // [nPositions]
  private readonly vocabRows: Float32Array; // wte rows of this shard's vocabulary slice
  private readonly vocabLogits: Float32Array; // the same slice of io.logits

  constructor(
    readonly config: GPT2Config,
    readonly slice: ShardSlice,
    weights: Float32Array,
    common: Float32Array,
    readonly cache: KVCache,
    readonly io: ShardIO,
    private readonly k: Kernels,
  ) {
    this.layout = shardLayout(config, slice);
    this.d = config.nEmbd;
    this.hd = headDim(config);
    this.heads = slice.heads[1] - slice.heads[0];
    const { attnWidth: w, mlpWidth: m } = this.layout;
    const d = this.d;
    this.layers = this.layout.layers.map((L) => ({
      qkvW: weights.subarray(L.qkvW, L.qkvW + 3 * w * d),
      qkvB: weights.subarray(L.qkvB, L.qkvB + 3 * w),
      projW: weights.subarray(L.projW, L.projW + d * w),
      fcW: weights.subarray(L.fcW, L.fcW + m * d),
      fcB: weights.subarray(L.fcB, L.fcB + m),
      fc2W: weights.subarray(L.fc2W, L.fc2W + d * m),
    }));
    this.qkv = new Float32Array(MAX_ROWS * 3 * w);
    this.att = new Float32Array(MAX_ROWS * w);
    this.hidden = new Float32Array(MAX_ROWS * m);
    this.scores = new Float32Array(config.nPositions);
    const wte = commonLayout(config).wte;
    const [v0, v1] = slice.vocab;
    this.vocabRows = common.subarray(wte + v0 * d, wte + v1 * d);
    this.vocabLogits = io.logits.subarray(v0, v1);
  }

  /** out[T,d] = this shard's heads' contribution to the attention output (before its bias). */
  attention(T: number, pos: number, layer: number): void {
    const { d, hd, heads, k } = this;
    const { input: xn, partial: out } = this.io;
    const w = this.layout.attnWidth;
    if (heads === 0) {
      out.fill(0, 0, T * d);
      return;
    }
    const L = this.layers[layer];
    k.matmul(this.qkv, xn, L.qkvW, L.qkvB, T, d, 3 * w);
    const keys = this.cache.keys[layer];
    const values = this.cache.values[layer];
    for (let h = 0; h < heads; h++) {
      const K = keys[h];
      const V = values[h];
      const qkv = this.qkv;
      for (let t = 0; t < T; t++) {
        const row = t * 3 * w + h * hd;
        const at = (pos + t) * hd;
        for (let i = 0; i < hd; i++) {
          K[at + i] = qkv[row + w + i];
          V[at + i] = qkv[row + 2 * w + i];
        }
      }
      k.attend(this.att, h * hd, w, this.qkv, h * hd, 3 * w, keys[h], values[h], this.scores, T, pos, hd);
    }
    k.matmul(out, this.att, L.projW, null, T, w, d);
  }

  /** out[T,d] = this shard's hidden units' contribution to the MLP output (before its bias). */
  mlp(T: number, layer: number): void {
    const { d, k } = this;
    const { input: xn, partial: out } = this.io;
    const m = this.layout.mlpWidth;
    if (m === 0) {
      out.fill(0, 0, T * d);
      return;
    }
    const L = this.layers[layer];
    k.matmul(this.hidden, xn, L.fcW, L.fcB, T, d, m);
    k.gelu(this.hidden, T * m);
    k.matmul(out, this.hidden, L.fc2W, null, T, m, d);
  }

  /** logits[v0..v1) = input[0] · wte[v]: this shard's rows of the tied unembedding. */
  logits(): void {
    this.k.matmul(this.vocabLogits, this.io.input, this.vocabRows, null, 1, this.d, this.vocabLogits.length);
  }
}
