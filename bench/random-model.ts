import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../src/engine/prng.ts';
import type { TensorToWrite } from '../src/engine/safetensors.ts';
import { encodeSafetensors } from '../src/engine/safetensors.ts';
import { expectedTensors } from '../src/engine/weights.ts';
import type { GPT2Config } from '../src/engine/config.ts';

/** GPT-2 small's shape: what a real checkpoint costs, with seeded random weights (never committed). */
export const GPT2_SMALL: GPT2Config = {
  nLayer: 12, nHead: 12, nEmbd: 768, nPositions: 1024, vocabSize: 50257, layerNormEpsilon: 1e-5, eosTokenId: 50256,
};

/** Writes (once per machine) a seeded random F16 model of `config`'s shape; returns its directory. */
export function randomModelDir(name: string, config: GPT2Config, seed = 1): string {
  const dir = join(tmpdir(), `gpt2-bench-${name}-${seed}`);
  if (existsSync(join(dir, 'model.safetensors'))) return dir;
  mkdirSync(dir, { recursive: true });
  const rng = new Prng(seed);
  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of expectedTensors(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const isGain = /ln_.*\.weight|ln_f\.weight/.test(name);
    for (let i = 0; i < n; i++) data[i] = isGain ? 1 + 0.1 * (rng.next() - 0.5) : 0.04 * (rng.next() - 0.5);
    tensors.push({ name, dtype: 'F16', shape, data });
  }
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'gpt2', n_layer: config.nLayer, n_head: config.nHead, n_embd: config.nEmbd,
    n_positions: config.nPositions, vocab_size: config.vocabSize, layer_norm_epsilon: config.layerNormEpsilon,
    eos_token_id: config.eosTokenId, activation_function: 'gelu_new',
  }));
  return dir;
}
