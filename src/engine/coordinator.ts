import type { GPT2Config } from './config.ts';
import type { Decoder, DecoderMode } from './decoder.ts';
import { AbortError } from './generate.ts';
import type { Kernels } from './kernels.ts';
import { ResidualStream } from './residual-stream.ts';
import { MAX_ROWS } from './shard.ts';
import { commonLayout } from './shard-plan.ts';

/**
 * The shards, seen from the coordinator: each call runs one step of one layer on every shard
 * and returns when all of them have written their partial output. In-process shards run in
 * turn; the worker pool runs them in parallel. `signal` lets a long step end early on abort.
 */
export interface ShardGroup {
  readonly mode: DecoderMode;
  /** Changes whenever the shards' KV caches are lost (the worker pool restarted its workers). */
  readonly generation: number;
  /** Every shard reads this [MAX_ROWS, d] normalized residual stream. */
  readonly input: Float32Array;
  /** Shard s writes its [MAX_ROWS, d] share here. */
  readonly partials: Float32Array[];
  /** [vocab], each shard writing its own slice. */
  readonly logits: Float32Array;
  attention(T: number, pos: number, layer: number, signal?: AbortSignal): void | Promise<void>;
  mlp(T: number, layer: number, signal?: AbortSignal): void | Promise<void>;
  logitsOfFirstRow(signal?: AbortSignal): void | Promise<void>;
  dispose(): Promise<void>;
}

interface CommonLayerViews {
  ln1G: Float32Array; ln1B: Float32Array; projB: Float32Array;
  ln2G: Float32Array; ln2B: Float32Array; fc2B: Float32Array;
}

export class DecoderError extends Error {
  override readonly name = 'DecoderError';
}

/**
 * Assembles the residual stream layer by layer: embeds the tokens, applies the LayerNorms,
 * hands the normalized stream to the shards and adds their partial outputs (and the biases)
 * back, then asks the shards for their slices of the logits.
 */
export class Coordinator implements Decoder {
  /** Tokens in the KV cache, valid while the shards' cache generation is `cacheGeneration`. */
  private pos = 0;
  private cacheGeneration: number;
  private readonly stream: ResidualStream;
  private readonly layers: CommonLayerViews[];
  private readonly lnfG: Float32Array;
  private readonly lnfB: Float32Array;
  private disposed = false;

  constructor(
    readonly config: GPT2Config,
    common: Float32Array,
    private readonly group: ShardGroup,
    kernels: Kernels,
  ) {
    const d = config.nEmbd;
    const cl = commonLayout(config);
    const view = (at: number): Float32Array => common.subarray(at, at + d);
    this.stream = new ResidualStream(config, common, kernels);
    this.layers = cl.layers.map((L) => ({
      ln1G: view(L.ln1G), ln1B: view(L.ln1B), projB: view(L.projB),
      ln2G: view(L.ln2G), ln2B: view(L.ln2B), fc2B: view(L.fc2B),
    }));
    this.lnfG = view(cl.lnfG);
    this.lnfB = view(cl.lnfB);
    this.cacheGeneration = group.generation;
  }

  /** The next token's position: 0 once the shards have lost their caches (a restarted worker pool). */
  get position(): number {
    return this.group.generation === this.cacheGeneration ? this.pos : 0;
  }

  get mode(): DecoderMode {
    return this.group.mode;
  }

  async step(ids: ArrayLike<number>, signal?: AbortSignal): Promise<Float32Array> {
    if (this.disposed) throw new DecoderError('this model has been unloaded');
    const n = ids.length;
    if (n === 0) throw new DecoderError('step needs at least one token');
    if (this.group.generation !== this.cacheGeneration) {
      // The caches were lost between two steps: what the caller believes is cached is gone.
      const lost = this.pos;
      this.pos = 0;
      this.cacheGeneration = this.group.generation;
      if (lost > 0) throw new DecoderError(`the shard workers were restarted and lost the ${lost} cached tokens; run the prompt again`);
    }
    if (this.pos + n > this.config.nPositions) {
      throw new DecoderError(`${this.pos} + ${n} tokens exceed the context window of ${this.config.nPositions}`);
    }
    for (let i = 0; i < n; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new DecoderError(`token id ${id} is outside the vocabulary [0, ${this.config.vocabSize})`);
      }
    }
    let T = 0;
    try {
      for (let from = 0; from < n; from += T) {
        T = Math.min(MAX_ROWS, n - from);
        await this.forward(ids, from, T, signal);
      }
      await this.unembed(T - 1, signal);
    } catch (e) {
      // An abort leaves the cache valid up to the chunk it interrupted (that chunk's rows are
      // overwritten by the next step); any other failure leaves no cache that can be trusted.
      if (!(e instanceof AbortError) || this.group.generation !== this.cacheGeneration) this.pos = 0;
      throw e;
    }
    return this.group.logits;
  }

  /** Runs T tokens through every layer at the current position, filling the KV caches. */
  private async forward(ids: ArrayLike<number>, from: number, T: number, signal: AbortSignal | undefined): Promise<void> {
    const { stream, group } = this;
    const pos = this.pos;
    stream.embed(ids, from, T, pos);
    for (let l = 0; l < this.config.nLayer; l++) {
      const L = this.layers[l];
      stream.normalize(group.input, L.ln1G, L.ln1B, T);
      await group.attention(T, pos, l, signal);
      stream.add(group.partials, L.projB, T);
      stream.normalize(group.input, L.ln2G, L.ln2B, T);
      await group.mlp(T, l, signal);
      stream.add(group.partials, L.fc2B, T);
    }
    this.pos = pos + T;
  }

  /** Final LayerNorm of one row of the stream, then the tied unembedding on the shards. */
  private async unembed(row: number, signal: AbortSignal | undefined): Promise<void> {
    this.stream.normalize(this.group.input, this.lnfG, this.lnfB, 1, row);
    await this.group.logitsOfFirstRow(signal);
  }

  rollback(position: number): void {
    if (!Number.isInteger(position) || position < 0 || position > this.position) {
      throw new DecoderError(`cannot roll back to ${position}: the cache holds ${this.position} tokens`);
    }
    this.pos = position;
    this.cacheGeneration = this.group.generation;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.group.dispose();
  }
}
