import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { GPT2Config } from '../engine/config.ts';
import { parseConfig } from '../engine/config.ts';
import { WeightsError } from '../engine/errors.ts';
import type { ByteSource } from '../engine/weights.ts';

/** A model directory on disk: Hugging Face's `config.json` + `model.safetensors`. */
export interface ModelDir {
  config: GPT2Config;
  source: ByteSource;
  close(): Promise<void>;
}

export async function openModelDir(dir: string): Promise<ModelDir> {
  let configText: string;
  try {
    configText = await readFile(join(dir, 'config.json'), 'utf8');
  } catch (e) {
    throw new WeightsError('config', 'config.json', `cannot read ${join(dir, 'config.json')}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const config = parseConfig(configText);
  const path = join(dir, 'model.safetensors');
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (e) {
    throw new WeightsError('file-too-small', 'model.safetensors', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const handle = await open(path, 'r');
  const source: ByteSource = {
    size,
    async read(begin, end) {
      const out = new Uint8Array(end - begin);
      let got = 0;
      while (got < out.length) {
        const { bytesRead } = await handle.read(out, got, out.length - got, begin + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      return got === out.length ? out : out.subarray(0, got);
    },
  };
  return { config, source, close: () => handle.close() };
}
