import { WeightsError } from './errors.ts';
import { displayText, displayValue } from './untrusted-text.ts';

// safetensors: [u64 LE header length N][N bytes of JSON header][data section].
// The header maps tensor names to {dtype, shape, data_offsets: [begin, end]} relative to the data section.

/** Bytes per element of every dtype safetensors defines; only the float ones can feed the engine. */
const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};
export type FloatDtype = 'F32' | 'F16' | 'BF16';
const FLOAT_DTYPES = new Set<string>(['F32', 'F16', 'BF16']);

/** The reference implementation refuses headers above 100 MB; so do we. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Absolute byte offsets in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Absolute offset of the data section (8 + header length). */
  dataStart: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/** Reads the header length from the first 8 bytes and checks it fits the file. */
export function headerLength(first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || first8.length < 8) {
    throw new WeightsError('file-too-small', '', `a safetensors file starts with an 8-byte header length; this one has ${fileSize} bytes`);
  }
  const view = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new WeightsError('header-too-large', '', `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const len = Number(n);
  if (8 + len > fileSize) {
    throw new WeightsError('header-too-large', '', `header length ${len} runs past the end of the ${fileSize}-byte file`);
  }
  if (len < 2) throw new WeightsError('header-json', '', `header length ${len} is too short for a JSON object`);
  return len;
}

/**
 * Parses and validates the header. `prefix` must hold at least the first 8 + header-length bytes;
 * `fileSize` is the whole file's size, so truncation is caught before any tensor is read.
 */
export function parseHeader(prefix: Uint8Array, fileSize: number): SafetensorsHeader {
  const len = headerLength(prefix, fileSize);
  if (prefix.length < 8 + len) {
    throw new WeightsError('truncated', '', `need ${8 + len} bytes to read the header, got ${prefix.length}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + len)));
  } catch (e) {
    throw new WeightsError('header-json', '', `header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new WeightsError('header-json', '', 'header is not a JSON object');
  }
  const dataStart = 8 + len;
  const dataBytes = fileSize - dataStart;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry === 'object' && entry !== null) metadata = entry as Record<string, string>;
      continue;
    }
    tensors.set(name, parseEntry(name, entry, dataStart));
  }
  checkOffsets(tensors, dataStart, dataBytes);
  return { dataStart, tensors, metadata };
}

function parseEntry(name: string, entry: unknown, dataStart: number): TensorInfo {
  if (typeof entry !== 'object' || entry === null) {
    throw new WeightsError('header-entry', name, 'entry is not an object');
  }
  const { dtype, shape, data_offsets: off } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
    throw new WeightsError('dtype', name, `unknown dtype ${displayValue(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
    throw new WeightsError('header-entry', name, `shape ${displayValue(shape)} is not a list of non-negative integers`);
  }
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new WeightsError('header-entry', name, `data_offsets ${displayValue(off)} is not a pair of non-negative integers`);
  }
  const [b, e] = off as [number, number];
  if (e < b) throw new WeightsError('offsets', name, `data_offsets [${b}, ${e}] end before they begin`);
  const elements = (shape as number[]).reduce((a, s) => a * s, 1);
  if (elements * DTYPE_BYTES[dtype] !== e - b) {
    throw new WeightsError('dtype', name, `${dtype} ${displayValue(shape)} needs ${elements * DTYPE_BYTES[dtype]} bytes but data_offsets span ${e - b}`);
  }
  return { name, dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e };
}

function checkOffsets(tensors: Map<string, TensorInfo>, dataStart: number, dataBytes: number): void {
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: TensorInfo | undefined;
  let last = dataStart;
  for (const t of sorted) {
    if (prev && t.begin < prev.end && t.end > t.begin) {
      throw new WeightsError('offsets', t.name, `data overlaps tensor ${displayText(prev.name)}`);
    }
    if (t.end > t.begin) prev = t;
    last = Math.max(last, t.end);
  }
  if (last - dataStart > dataBytes) {
    // A cut-off file loses the tail of tightly packed data; a tensor that starts past the end,
    // after a gap the rest of the data does not explain, has bad offsets instead.
    const at = sorted.findIndex((t) => t.end - dataStart > dataBytes);
    const culprit = sorted[at];
    const packedEnd = at > 0 ? sorted[at - 1].end : dataStart;
    const fileEnd = dataStart + dataBytes;
    if (culprit.begin >= fileEnd && culprit.begin > packedEnd) {
      throw new WeightsError('offsets', culprit.name, `data_offsets point past the end of the file (byte ${culprit.begin} ≥ ${fileEnd})`);
    }
    throw new WeightsError('truncated', culprit.name, `the file ends at byte ${fileEnd} but this tensor's data runs to byte ${culprit.end}: the file is truncated`);
  }
}

/** The number of elements of a tensor. */
export const elementCount = (t: TensorInfo): number => t.shape.reduce((a, s) => a * s, 1);

export function isFloatDtype(d: string): d is FloatDtype {
  return FLOAT_DTYPES.has(d);
}

const f16Table = buildF16Table();

// 65536 entries: one lookup per half beats bit-twiddling in a hot loader loop.
function buildF16Table(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = s * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : s * Infinity;
    else t[h] = s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
}

/**
 * Decodes `bytes` (the raw little-endian elements of a float tensor, any alignment) into
 * `out[outOffset...]` as float32. Used chunk by chunk, so `bytes` may be a slice of a tensor.
 */
export function decodeFloats(dtype: FloatDtype, bytes: Uint8Array, out: Float32Array, outOffset = 0): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === 'F32') {
    const n = bytes.byteLength >> 2;
    for (let i = 0; i < n; i++) out[outOffset + i] = view.getFloat32(i << 2, true);
  } else if (dtype === 'F16') {
    const n = bytes.byteLength >> 1;
    for (let i = 0; i < n; i++) out[outOffset + i] = f16Table[view.getUint16(i << 1, true)];
  } else {
    // bfloat16 is the top half of a float32.
    const n = bytes.byteLength >> 1;
    const u32 = new Uint32Array(1);
    const f32 = new Float32Array(u32.buffer);
    for (let i = 0; i < n; i++) {
      u32[0] = view.getUint16(i << 1, true) << 16;
      out[outOffset + i] = f32[0];
    }
  }
}

/** A tensor to write: values are rounded to `dtype` on the way out. */
export interface TensorToWrite {
  name: string;
  dtype: FloatDtype;
  shape: number[];
  data: Float32Array;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 → IEEE half, round to nearest even. */
export function toF16(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** Serializes tensors to the safetensors format (used by tests, the benchmark's generated model and tools). */
export function encodeSafetensors(tensors: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.data.length * (t.dtype === 'F32' ? 4 : 2);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8 !== 0) json += ' ';
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let p = 8 + headerBytes.length;
  for (const t of tensors) {
    if (t.dtype === 'F32') {
      for (let i = 0; i < t.data.length; i++, p += 4) view.setFloat32(p, t.data[i], true);
    } else if (t.dtype === 'F16') {
      for (let i = 0; i < t.data.length; i++, p += 2) view.setUint16(p, toF16(t.data[i]), true);
    } else {
      const u = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
      for (let i = 0; i < t.data.length; i++, p += 2) view.setUint16(p, u[i] >>> 16, true);
    }
  }
  return out;
}
