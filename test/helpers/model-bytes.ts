import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FloatDtype, TensorToWrite } from '../../src/engine/safetensors.ts';
import { decodeFloats, elementCount, encodeSafetensors, parseHeader } from '../../src/engine/safetensors.ts';
import type { ByteSource } from '../../src/engine/weights.ts';
import { TINY } from './fixtures.ts';

export const tinyConfigText = (): string => readFileSync(join(TINY, 'config.json'), 'utf8');
export const tinyBytes = (): Uint8Array => new Uint8Array(readFileSync(join(TINY, 'model.safetensors')));

/** A ByteSource over bytes in memory. */
export function memorySource(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: async (b, e) => bytes.slice(b, Math.min(e, bytes.length)) };
}

/** Every tensor of the tiny model decoded to float32, in file order, ready to re-encode. */
export function tinyTensors(): TensorToWrite[] {
  const bytes = tinyBytes();
  const h = parseHeader(bytes, bytes.length);
  return [...h.tensors.values()]
    .sort((a, b) => a.begin - b.begin)
    .map((t) => {
      const data = new Float32Array(elementCount(t));
      decodeFloats(t.dtype as FloatDtype, bytes.subarray(t.begin, t.end), data);
      return { name: t.name, dtype: t.dtype as FloatDtype, shape: t.shape, data };
    });
}

/** The tiny model's data section under a hand-edited header. */
export function withHeader(edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>) => void): Uint8Array {
  const bytes = tinyBytes();
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  edit(header);
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + bytes.length - 8 - n);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  out.set(bytes.subarray(8 + n), 8 + hb.length);
  return out;
}

/** The tiny model cut to a window of `positions` tokens: its config and its weights. */
export function tinyWithWindow(positions: number): { configText: string; bytes: Uint8Array } {
  const tensors = tinyTensors()
    .filter((t) => !t.name.endsWith('.attn.bias'))
    .map((t) => (t.name === 'wpe.weight' ? { ...t, shape: [positions, t.shape[1]], data: t.data.slice(0, positions * t.shape[1]) } : t));
  const configText = JSON.stringify({ ...JSON.parse(tinyConfigText()), n_positions: positions, n_ctx: positions });
  return { configText, bytes: encodeSafetensors(tensors) };
}

export { encodeSafetensors };
