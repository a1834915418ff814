import type { GPT2Config } from '../engine/config.ts';
import { parseConfig } from '../engine/config.ts';
import { WeightsError } from '../engine/errors.ts';
import { headerLength, parseHeader } from '../engine/safetensors.ts';
import type { ByteSource } from '../engine/weights.ts';
import { matchTensors, readHeader } from '../engine/weights.ts';
import { invalidModel } from './errors.ts';

// A model is accepted only if the engine's own parser accepts it: config.json, the safetensors
// header, and every tensor the config requires with the shape it implies. Tensor values are not
// read here (the sha256 covers integrity; the loader checks for NaN when it decodes).

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

/**
 * How many leading bytes of a file the header check needs, given its first 8 bytes; lets a
 * download reject a bad file as soon as its header is in rather than after the last byte.
 */
export const headerBytesNeeded = (first8: Uint8Array): Promise<number> => parsing(() => 8 + headerLength(first8, null));

/**
 * Validates config.json and a safetensors header (`prefix`: at least headerBytesNeeded bytes)
 * whose file is still arriving; resolves with the file's exact size, which the header states.
 */
export const checkHeader = (configText: string, prefix: Uint8Array): Promise<number> =>
  parsing(() => {
    const header = parseHeader(prefix, null);
    matchTensors(parseConfig(configText), header);
    return header.fileSize;
  });
