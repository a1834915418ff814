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

/** The reference implementation refuses headers above 100 MB (10^8 bytes); so do we. */
export const MAX_HEADER_BYTES = 100_000_000;

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
  /** The file's size as the header states it: the end of the last tensor's data. */
  fileSize: number;
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
}

/**
 * Reads the header length from the first 8 bytes and checks it fits the file (of `fileSize`
 * bytes, or null while that is not known: a download in progress).
 */
export function headerLength(first8: Uint8Array, fileSize: number | null): number {
  if ((fileSize !== null && fileSize < 8) || first8.length < 8) {
    throw new WeightsError('file-too-small', '', `a safetensors file starts with an 8-byte header length; this one has ${fileSize ?? first8.length} bytes`);
  }
  const view = new DataView(first8.buffer, first8.byteOffset, 8);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new WeightsError('header-too-large', '', `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const len = Number(n);
  if (fileSize !== null && 8 + len > fileSize) {
    throw new WeightsError('header-too-large', '', `header length ${len} runs past the end of the ${fileSize}-byte file`);
  }
  if (len < 2) throw new WeightsError('header-json', '', `header length ${len} is too short for a JSON object`);
  return len;
}

const OPEN_BRACE = 0x7b;
const SPACE = 0x20;

/**
 * Parses and validates the header as strictly as the format: it begins with `{` (no byte-order
 * mark), may be padded with spaces only, has no duplicate keys, states shapes and offsets as
 * plain non-negative integers, and its tensors tile the data section exactly, with no gap and no
 * byte after the last one (the reference implementation's rules, which also keep a file from
 * being a polyglot). `prefix` must hold at least the first 8 + header-length bytes; `fileSize`
 * is the whole file's size, so truncation is caught before any tensor is read; null while it is
 * not known (a download in progress): then the header's own `fileSize` says where to stop.
 */
export function parseHeader(prefix: Uint8Array, fileSize: number | null): SafetensorsHeader {
  const len = headerLength(prefix, fileSize);
  if (prefix.length < 8 + len) {
    throw new WeightsError('truncated', '', `need ${8 + len} bytes to read the header, got ${prefix.length}`);
  }
  const bytes = prefix.subarray(8, 8 + len);
  checkFraming(bytes);
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    json = JSON.parse(text);
  } catch (e) {
    throw new WeightsError('header-json', '', `header is not valid UTF-8 JSON (${displayText((e as Error).message)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new WeightsError('header-json', '', 'header is not a JSON object');
  }
  checkLiterals(text);
  const dataStart = 8 + len;
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') metadata = parseMetadata(entry);
    else tensors.set(name, parseEntry(name, entry, dataStart));
  }
  const end = checkOffsets(tensors, dataStart, fileSize);
  return { dataStart, fileSize: end, tensors, metadata };
}

/** The header's first byte is `{` and it ends in `}` followed by spaces only. */
function checkFraming(bytes: Uint8Array): void {
  if (bytes[0] !== OPEN_BRACE) {
    const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf;
    const found = bom ? 'a UTF-8 byte-order mark' : `byte 0x${bytes[0].toString(16).padStart(2, '0')}`;
    throw new WeightsError('header-json', '', `header starts with ${found}; the format requires it to begin with "{"`);
  }
  let last = bytes.length - 1;
  while (last > 0 && bytes[last] === SPACE) last--;
  if (bytes[last] !== 0x7d) {
    throw new WeightsError('header-json', '', `header ends with byte 0x${bytes[last].toString(16).padStart(2, '0')}; after the closing "}" only spaces may pad it`);
  }
}

const PLAIN_INTEGER = /^(0|[1-9][0-9]*)$/;
const NUMBER_CHAR = /[-+.eE0-9]/;

/**
 * What JSON.parse cannot tell: duplicate keys (it keeps the last one silently, where other
 * parsers may keep the first), and how a number was written (`64.0` and `6.4e1` parse to 64,
 * but a shape or an offset must be an integer literal). `text` is already known to be valid JSON,
 * so one pass over it with a stack of open objects and arrays suffices.
 */
function checkLiterals(text: string): void {
  const stack: Array<{ keys: Set<string> | null; key: string }> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (expectKey && top.keys) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) {
          const subject = stack.length === 1 ? key : stack[0].key;
          throw new WeightsError('header-entry', subject, stack.length === 1 ? 'appears twice in the header' : `has the field ${displayValue(key)} twice`);
        }
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      stack.push({ keys: new Set(), key: '' });
      expectKey = true;
    } else if (c === '[') {
      stack.push({ keys: null, key: '' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      expectKey = top.keys !== null;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let j = i + 1;
      while (j < text.length && NUMBER_CHAR.test(text[j])) j++;
      const literal = text.slice(i, j);
      const field = stack.length === 3 && top.keys === null ? stack[1].key : '';
      if ((field === 'shape' || field === 'data_offsets') && stack[0].key !== '__metadata__' && !PLAIN_INTEGER.test(literal)) {
        throw new WeightsError('header-entry', stack[0].key, `${field} holds ${displayText(literal, 24)}, not a plain non-negative integer`);
      }
      i = j - 1;
    }
  }
}

/** `__metadata__` is a map of strings to strings (or null). */
function parseMetadata(entry: unknown): Record<string, string> {
  if (entry === null) return {};
  if (typeof entry !== 'object' || Array.isArray(entry)) {
    throw new WeightsError('header-entry', '__metadata__', `must map strings to strings, got ${displayValue(entry)}`);
  }
  for (const [k, v] of Object.entries(entry as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new WeightsError('header-entry', '__metadata__', `the value of ${displayValue(k)} is ${displayValue(v)}, not a string`);
  }
  return entry as Record<string, string>;
}

function parseEntry(name: string, entry: unknown, dataStart: number): TensorInfo {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw new WeightsError('header-entry', name, 'entry is not an object');
  }
  const { dtype, shape, data_offsets: off } = entry as Record<string, unknown>;
  if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
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
  let bytes = DTYPE_BYTES[dtype];
  for (const s of shape as number[]) {
    // Checked multiplication: a product past 2^53 would silently lose precision.
    if (s !== 0 && bytes > Number.MAX_SAFE_INTEGER / s) {
      throw new WeightsError('header-entry', name, `shape ${displayValue(shape)} overflows: more bytes than any file can hold`);
    }
    bytes *= s;
  }
  if (bytes !== e - b) {
    throw new WeightsError('dtype', name, `${dtype} ${displayValue(shape)} needs ${bytes} bytes but data_offsets span ${e - b}`);
  }
  return { name, dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e };
}

/**
 * Checks that the tensors, in offset order, tile the data section from its first byte with no
 * gap or overlap; returns where the last one ends. A file longer than that has trailing bytes; a
 * shorter one is truncated. `fileSize` null: not known yet (a download in progress).
 */
function checkOffsets(tensors: Map<string, TensorInfo>, dataStart: number, fileSize: number | null): number {
  const sorted = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  if (fileSize !== null) {
    // A cut-off file loses the tail of packed data; a tensor that starts past the end, after a
    // gap the rest of the data does not explain, has bad offsets instead.
    for (let k = 0; k < sorted.length; k++) {
      const t = sorted[k];
      const packedEnd = k > 0 ? sorted[k - 1].end : dataStart;
      if (t.begin > fileSize && t.begin > packedEnd) {
        throw new WeightsError('offsets', t.name, `data_offsets point past the end of the file (byte ${t.begin} ≥ ${fileSize})`);
      }
    }
  }
  let at = dataStart;
  let prev: TensorInfo | undefined;
  for (const t of sorted) {
    if (t.begin < at) throw new WeightsError('offsets', t.name, `data overlaps tensor ${displayText(prev!.name)}`);
    if (t.begin > at) {
      throw new WeightsError('offsets', t.name, `data_offsets leave a gap of ${t.begin - at} bytes before this tensor; the format requires packed data`);
    }
    at = t.end;
    prev = t;
  }
  if (fileSize !== null && at > fileSize) {
    const culprit = sorted.find((t) => t.end > fileSize)!;
    throw new WeightsError('truncated', culprit.name, `the file ends at byte ${fileSize} but this tensor's data runs to byte ${culprit.end}: the file is truncated`);
  }
  if (fileSize !== null && at < fileSize) {
    throw new WeightsError('trailing-data', '', `${fileSize - at} bytes follow the last tensor's data (which ends at byte ${at}); the format forbids trailing bytes`);
  }
  return at;
}

/** The number of elements of a tensor. */
export const elementCount = (t: TensorInfo): number => t.shape.reduce((a, s) => a * s, 1);

export function isFloatDtype(d: string): d is FloatDtype {
  return FLOAT_DTYPES.has(d);
}

/**
 * Index of the first NaN or infinite element among the whole elements of `bytes` (raw
 * little-endian `dtype` values), or -1. Reads the exponent bits only: all ones means NaN or ±∞.
 */
export function firstNonFinite(dtype: FloatDtype, bytes: Uint8Array): number {
  if (dtype === 'F16') {
    for (let i = 1; i < bytes.length; i += 2) if ((bytes[i] & 0x7c) === 0x7c) return i >> 1;
    return -1;
  }
  // float32 and bfloat16 share the exponent's place in their top two bytes.
  const width = dtype === 'F32' ? 4 : 2;
  for (let i = width - 1; i < bytes.length; i += width) {
    if ((bytes[i] & 0x7f) === 0x7f && (bytes[i - 1] & 0x80) !== 0) return (i - width + 1) / width;
  }
  return -1;
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
