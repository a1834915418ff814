import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Decoder } from '../../src/engine/decoder.ts';
import { createReferenceDecoder } from '../../src/engine/reference.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import type { LoadedWeights } from '../../src/engine/weights.ts';
import { loadWeights } from '../../src/engine/weights.ts';
import { openModelDir } from '../../src/node/model-dir.ts';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const TINY = join(ROOT, 'test/models/tiny');

export interface FixtureCase {
  name: string;
  prompt_ids: number[];
  prefill: { position: number; offset: number };
  decode: Array<{ input_id: number; position: number; offset: number }>;
  greedy_ids: number[];
  min_greedy_gap: number;
}

export interface Fixture {
  model: string;
  vocab_size: number;
  cases: FixtureCase[];
  /** The logits block that starts at float offset `offset`. */
  logits(offset: number): Float32Array;
}

/** Reads `test/fixtures/<name>.json` and its float32 logits written by tools/ (PyTorch, float64). */
export function readFixture(name: string): Fixture {
  const meta = JSON.parse(readFileSync(join(ROOT, 'test/fixtures', `${name}.json`), 'utf8')) as Omit<Fixture, 'logits'> & { data: string };
  const raw = readFileSync(join(ROOT, 'test/fixtures', meta.data));
  const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  return { ...meta, logits: (offset) => all.subarray(offset, offset + meta.vocab_size) };
}

export async function loadModel(dir: string, shards = 1): Promise<LoadedWeights> {
  const m = await openModelDir(dir);
  try {
    return await loadWeights(m.config, m.source, planShards(m.config, shards));
  } finally {
    await m.close();
  }
}

export async function referenceDecoder(dir = TINY): Promise<Decoder> {
  return createReferenceDecoder(await loadModel(dir));
}

/** max_i |a_i − b_i| / max_i |b_i|: the error relative to the largest reference logit. */
export function relativeError(got: Float32Array, want: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / scale;
}
