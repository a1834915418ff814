import type { GPT2Config } from './config.ts';
import { headDim } from './config.ts';
import type { Allocate } from './weights.ts';

// The keys and values of one shard's heads, for every layer and every position of the window.
// Layout [layer][head][k|v][position][hd]: one head's keys are contiguous, which is what the
// attention kernel scans. Which positions are valid is the coordinator's business: rolling back
// is just decoding again from an earlier position, overwriting what follows.

export class KVCache {
  readonly buffer: Float32Array;
  /** keys[layer][localHead] and values[layer][localHead]: [nPositions, hd] views. */
  readonly keys: Float32Array[][];
  readonly values: Float32Array[][];

  static floats(config: GPT2Config, heads: number): number {
    return config.nLayer * heads * 2 * config.nPositions * headDim(config);
  }

  constructor(config: GPT2Config, heads: number, buffer: Float32Array | Allocate) {
    const n = KVCache.floats(config, heads);
    this.buffer = typeof buffer === 'function' ? buffer(n) : buffer;
    if (this.buffer.length < n) throw new RangeError(`kv cache needs ${n} floats, got ${this.buffer.length}`);
    const span = config.nPositions * headDim(config);
    this.keys = [];
    this.values = [];
    let p = 0;
    for (let l = 0; l < config.nLayer; l++) {
      const k: Float32Array[] = [];
      const v: Float32Array[] = [];
      for (let h = 0; h < heads; h++) {
        k.push(this.buffer.subarray(p, p + span));
        v.push(this.buffer.subarray(p + span, p + 2 * span));
        p += 2 * span;
      }
      this.keys.push(k);
      this.values.push(v);
    }
  }
}
