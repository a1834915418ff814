import type { GPT2Config } from './config.ts';
import { headDim } from './config.ts';

// Which slice of every layer each shard owns, and where each of its tensors lives in its buffer.
// The layout is a pure function of (config, plan), so the coordinator and every worker derive the
// same views from the same SharedArrayBuffer without sending any offsets.

/** Half-open ranges [begin, end) of heads, MLP columns and vocabulary rows. */
export interface ShardSlice {
  index: number;
  heads: [number, number];
  mlp: [number, number];
  vocab: [number, number];
}

function split(total: number, parts: number, i: number): [number, number] {
  // The first `total % parts` shards take one extra: 12 heads over 5 → 3,3,2,2,2.
  const base = Math.floor(total / parts);
  const extra = total % parts;
  const begin = i * base + Math.min(i, extra);
  return [begin, begin + base + (i < extra ? 1 : 0)];
}

export function planShards(config: GPT2Config, shards: number): ShardSlice[] {
  if (!Number.isInteger(shards) || shards < 1) throw new RangeError(`shard count must be a positive integer, got ${shards}`);
  return Array.from({ length: shards }, (_, index) => ({
    index,
    heads: split(config.nHead, shards, index),
    mlp: split(4 * config.nEmbd, shards, index),
    vocab: split(config.vocabSize, shards, index),
  }));
}

/** Float offsets of one layer's tensors inside a shard's weight buffer. */
export interface ShardLayerLayout {
  qkvW: number; // [3·h·hd, d]: rows q of the shard's heads, then k, then v
  qkvB: number; // [3·h·hd]
  projW: number; // [d, h·hd]: the attention output projection's rows for these heads, transposed
  fcW: number; // [m, d]
  fcB: number; // [m]
  fc2W: number; // [d, m]
}

export interface ShardLayout {
  /** Width of this shard's heads (h·hd) and of its MLP slice (m). */
  attnWidth: number;
  mlpWidth: number;
  layers: ShardLayerLayout[];
  floats: number;
}

export function shardLayout(config: GPT2Config, slice: ShardSlice): ShardLayout {
  const d = config.nEmbd;
  const attnWidth = (slice.heads[1] - slice.heads[0]) * headDim(config);
  const mlpWidth = slice.mlp[1] - slice.mlp[0];
  let p = 0;
  const take = (n: number): number => ((p += n), p - n);
  const layers: ShardLayerLayout[] = [];
  for (let l = 0; l < config.nLayer; l++) {
    layers.push({
      qkvW: take(3 * attnWidth * d),
      qkvB: take(3 * attnWidth),
      projW: take(d * attnWidth),
      fcW: take(mlpWidth * d),
      fcB: take(mlpWidth),
      fc2W: take(d * mlpWidth),
    });
  }
  return { attnWidth, mlpWidth, layers, floats: p };
}

/** Float offsets of the tensors every shard reads or the coordinator applies. */
export interface CommonLayerLayout {
  ln1G: number; ln1B: number; projB: number;
  ln2G: number; ln2B: number; fc2B: number;
}
export interface CommonLayout {
  wte: number; // [V, d], also the tied unembedding; shards read their vocabulary rows
  wpe: number; // [P, d]
  lnfG: number; lnfB: number;
  layers: CommonLayerLayout[];
  floats: number;
}

export function commonLayout(config: GPT2Config): CommonLayout {
  const d = config.nEmbd;
  let p = 0;
  const take = (n: number): number => ((p += n), p - n);
  const wte = take(config.vocabSize * d);
  const wpe = take(config.nPositions * d);
  const lnfG = take(d);
  const lnfB = take(d);
  const layers: CommonLayerLayout[] = [];
  for (let l = 0; l < config.nLayer; l++) {
    layers.push({ ln1G: take(d), ln1B: take(d), projB: take(d), ln2G: take(d), ln2B: take(d), fc2B: take(d) });
  }
  return { wte, wpe, lnfG, lnfB, layers, floats: p };
}
