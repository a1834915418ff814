import type { GPT2Config } from './config.ts';
import type { Kernels } from './kernels.ts';
import { MAX_ROWS } from './shard.ts';
import { commonLayout } from './shard-plan.ts';

/**
 * The residual stream x[T, d]: token + position embeddings at the start, to which every
 * attention and MLP block adds its output. Owned by the coordinator; shards only ever see
 * its LayerNorm-ed copy.
 */
export class ResidualStream {
  readonly x: Float32Array;
  private readonly d: number;
  private readonly wte: Float32Array;
  private readonly wpe: Float32Array;
  /** rows[t] views x from row t on, made once so the final LayerNorm of the last row allocates nothing. */
  private readonly rows: Float32Array[];

  constructor(
    private readonly config: GPT2Config,
    common: Float32Array,
    private readonly k: Kernels,
  ) {
    const d = (this.d = config.nEmbd);
    const cl = commonLayout(config);
    this.x = new Float32Array(MAX_ROWS * d);
    this.wte = common.subarray(cl.wte, cl.wte + config.vocabSize * d);
    this.wpe = common.subarray(cl.wpe, cl.wpe + config.nPositions * d);
    this.rows = Array.from({ length: MAX_ROWS }, (_, t) => this.x.subarray(t * d));
  }

  /** x[t] = wte[ids[from + t]] + wpe[pos + t] for t < T. */
  embed(ids: ArrayLike<number>, from: number, T: number, pos: number): void {
    const { d, x, wte, wpe } = this;
    for (let t = 0; t < T; t++) {
      const te = ids[from + t] * d;
      const pe = (pos + t) * d;
      const xo = t * d;
      for (let i = 0; i < d; i++) x[xo + i] = wte[te + i] + wpe[pe + i];
    }
  }

  /** x += Σ_s partials[s] + bias: the block's output, assembled from every shard's share. */
  add(partials: Float32Array[], bias: Float32Array, T: number): void {
    const { d, x } = this;
    for (let t = 0; t < T; t++) {
      const o = t * d;
      for (let i = 0; i < d; i++) {
        let v = bias[i];
        for (let s = 0; s < partials.length; s++) v += partials[s][o + i];
        x[o + i] += v;
      }
    }
  }

  /** out[T, d] = LayerNorm(x[rows from `row`]) with gain g and bias b taken from views. */
  normalize(out: Float32Array, g: Float32Array, b: Float32Array, T: number, row = 0): void {
    const d = this.d;
    this.k.layerNorm(out, this.rows[row], g, b, T, d, this.config.layerNormEpsilon);
  }
}
