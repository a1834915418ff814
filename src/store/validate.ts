import type { GPT2Config } from '../engine/config.ts';
import { parseConfig } from '../engine/config.ts';
import { WeightsError } from '../engine/errors.ts';
import type { ByteSource } from '../engine/weights.ts';
import { matchTensors, readHeader } from '../engine/weights.ts';
import { invalidModel } from './errors.ts';

export { MAX_CONFIG_BYTES } from '../engine/config.ts';

// A model is accepted only if the engine's own parser accepts it: config.json, the safetensors
// header, and every tensor the config requires with the shape it implies. Tensor values are
// checked as the bytes stream in (file-check.ts), so a NaN model is refused before it is stored.

/** Runs a parser step, turning its WeightsError into StoreError 'invalid-model'. */
async function parsing<T>(step: () => T | Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    throw e instanceof WeightsError ? invalidModel(e) : e;
  }
}

export const checkConfig = (configText: string): Promise<GPT2Config> => parsing(() => parseConfig(configText));

/** Validates config.json and the safetensors header of `source` against each other. */
export function checkModel(configText: string, source: ByteSource): Promise<GPT2Config> {
  return parsing(async () => {
    const config = parseConfig(configText);
    matchTensors(config, await readHeader(source));
    return config;
  });
}
