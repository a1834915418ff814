import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { GPT2Config } from '../engine/config.ts';
import { MAX_CONFIG_BYTES, parseConfig } from '../engine/config.ts';
import { WeightsError } from '../engine/errors.ts';
import type { ByteSource } from '../engine/weights.ts';

/** A model directory on disk: Hugging Face's `config.json` + `model.safetensors`. */
export interface ModelDir {
  config: GPT2Config;
  source: ByteSource;
  close(): Promise<void>;
}

type Culprit = 'config' | 'file-too-small';

/**
 * Opens a regular file, or fails with a WeightsError naming it. O_NONBLOCK: opening a FIFO for
 * reading would otherwise wait for a writer forever; the check runs on the opened file (fstat),
 * so nothing can swap the path between the check and the read.
 */
async function openRegular(path: string, name: string, code: Culprit): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw new WeightsError(code, name, `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    const kind = info.isDirectory() ? 'a directory' : info.isFIFO() ? 'a named pipe' : info.isSocket() ? 'a socket' : 'a device';
    throw new WeightsError(code, name, `${path} is ${kind}, not a regular file`);
  }
  return { handle, size: info.size };
}

/** Reads all of a small file, refusing one larger than `max` bytes (it may grow while read). */
async function readBounded(handle: FileHandle, max: number, path: string): Promise<string> {
  const buf = new Uint8Array(max + 1);
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await handle.read(buf, got, buf.length - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  if (got > max) throw new WeightsError('config', 'config.json', `${path} is larger than ${max} bytes; a GPT-2 config.json is a few hundred`);
  return new TextDecoder().decode(buf.subarray(0, got));
}

export async function openModelDir(dir: string): Promise<ModelDir> {
  const configPath = join(dir, 'config.json');
  const cfg = await openRegular(configPath, 'config.json', 'config');
  let configText: string;
  try {
    configText = await readBounded(cfg.handle, MAX_CONFIG_BYTES, configPath);
  } finally {
    await cfg.handle.close();
  }
  const config = parseConfig(configText);
  const path = join(dir, 'model.safetensors');
  const { handle, size } = await openRegular(path, 'model.safetensors', 'file-too-small');
  const source: ByteSource = {
    size,
    async read(begin, end) {
      const out = new Uint8Array(Math.max(0, Math.min(end, size) - begin));
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
