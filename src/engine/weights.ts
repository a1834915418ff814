import type { GPT2Config } from './config.ts';
import { headDim } from './config.ts';
import { WeightsError } from './errors.ts';
import { displayText, displayValue } from './untrusted-text.ts';
import type { SafetensorsHeader, TensorInfo } from './safetensors.ts';
import { decodeFloats, headerLength, isFloatDtype, parseHeader } from './safetensors.ts';
import type { ShardLayerLayout, ShardSlice } from './shard-plan.ts';
import { commonLayout, shardLayout } from './shard-plan.ts';

// Loads a Hugging Face GPT-2 checkpoint straight into the kernel layout of a shard plan:
// each tensor is streamed from the source in chunks, decoded to float32 and scattered to the
// buffer of the shard that owns it. Nothing is held twice, whatever the number of shards.

/** Random access to the bytes of a safetensors file: a file on disk, a Blob, IndexedDB chunks. */
export interface ByteSource {
  readonly size: number;
  read(begin: number, end: number): Promise<Uint8Array>;
}

/** Random access to a Blob (a picked File); slices are read lazily, never the whole file. */
export function blobSource(blob: Blob): ByteSource {
  return {
    size: blob.size,
    read: async (begin, end) => new Uint8Array(await blob.slice(begin, Math.min(end, blob.size)).arrayBuffer()),
  };
}

/** Allocates a float buffer: SharedArrayBuffer-backed for the worker pool, plain otherwise. */
export type Allocate = (floats: number) => Float32Array;
export const allocatePlain: Allocate = (n) => new Float32Array(n);
export const allocateShared: Allocate = (n) => new Float32Array(new SharedArrayBuffer(n * 4));

export interface LoadedWeights {
  config: GPT2Config;
  /** Embeddings, LayerNorms and the biases the coordinator adds: see commonLayout. */
  common: Float32Array;
  /** One buffer per shard of the plan: see shardLayout. */
  shards: Float32Array[];
}

export interface LoadProgress {
  bytesRead: number;
  bytesTotal: number;
}

/** Strips the `transformer.` prefix some checkpoints carry (gpt2-medium, DialoGPT). */
function canonicalName(name: string): string {
  return name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
}

/** The HF shape of every tensor the engine needs, by canonical name. */
export function expectedTensors(c: GPT2Config): Map<string, number[]> {
  const d = c.nEmbd;
  const m = new Map<string, number[]>([
    ['wte.weight', [c.vocabSize, d]],
    ['wpe.weight', [c.nPositions, d]],
    ['ln_f.weight', [d]],
    ['ln_f.bias', [d]],
  ]);
  for (let l = 0; l < c.nLayer; l++) {
    const h = `h.${l}.`;
    m.set(h + 'ln_1.weight', [d]).set(h + 'ln_1.bias', [d]);
    m.set(h + 'attn.c_attn.weight', [d, 3 * d]).set(h + 'attn.c_attn.bias', [3 * d]);
    m.set(h + 'attn.c_proj.weight', [d, d]).set(h + 'attn.c_proj.bias', [d]);
    m.set(h + 'ln_2.weight', [d]).set(h + 'ln_2.bias', [d]);
    m.set(h + 'mlp.c_fc.weight', [d, 4 * d]).set(h + 'mlp.c_fc.bias', [4 * d]);
    m.set(h + 'mlp.c_proj.weight', [4 * d, d]).set(h + 'mlp.c_proj.bias', [d]);
  }
  return m;
}

/** Checks the header against the config; returns the needed tensors in file order. */
export function matchTensors(config: GPT2Config, header: SafetensorsHeader): Array<{ name: string; info: TensorInfo }> {
  const expected = expectedTensors(config);
  const found = new Map<string, TensorInfo>();
  for (const [raw, info] of header.tensors) {
    const name = canonicalName(raw);
    const layer = /^h\.(\d+)\./.exec(name);
    if (layer && Number(layer[1]) >= config.nLayer) {
      throw new WeightsError('shape', raw, `belongs to layer ${displayText(layer[1], 12)} but config.json says n_layer = ${config.nLayer}`);
    }
    if (!expected.has(name)) continue; // attn.bias / attn.masked_bias buffers, the tied lm_head
    if (found.has(name)) throw new WeightsError('header-entry', raw, 'appears twice (with and without the transformer. prefix)');
    const shape = expected.get(name)!;
    if (!isFloatDtype(info.dtype)) {
      throw new WeightsError('dtype', raw, `dtype ${info.dtype} cannot be read as float32 (need F32, F16 or BF16)`);
    }
    if (info.shape.length !== shape.length || info.shape.some((s, i) => s !== shape[i])) {
      throw new WeightsError('shape', raw, `shape ${displayValue(info.shape)} disagrees with config.json, which implies ${displayValue(shape)}`);
    }
    found.set(name, info);
  }
  for (const name of expected.keys()) {
    if (!found.has(name)) throw new WeightsError('missing-tensor', name, 'required by config.json but not in the file');
  }
  return [...found].map(([name, info]) => ({ name, info })).sort((a, b) => a.info.begin - b.info.begin);
}

/** Reads and validates the safetensors header of a source. */
export async function readHeader(source: ByteSource): Promise<SafetensorsHeader> {
  const len = headerLength(await source.read(0, Math.min(8, source.size)), source.size);
  return parseHeader(await source.read(0, 8 + len), source.size);
}

/** Places `count` decoded elements of one tensor, starting at element `first`, into their buffers. */
type Scatter = (values: Float32Array, first: number, count: number) => void;

/**
 * An HF Conv1D tensor [rows = in, cols = out] whose output columns are split over the shards:
 * column j becomes row local[j] of shard owner[j]'s [out, in] matrix at bases[s]. A bias is the
 * same with rows = 1.
 */
function byColumn(shards: Float32Array[], rows: number, cols: number, owner: Int32Array, local: Int32Array, bases: number[]): Scatter {
  return (v, first, n) => {
    for (let k = 0; k < n; k++) {
      const e = first + k;
      const i = Math.floor(e / cols);
      const j = e - i * cols;
      const s = owner[j];
      shards[s][bases[s] + local[j] * rows + i] = v[k];
    }
  };
}

/**
 * An HF Conv1D tensor [rows = in, cols = out] whose input rows are split over the shards (the
 * output projections): row i becomes column local[i] of shard owner[i]'s [out, widths[s]] matrix.
 */
function byRow(shards: Float32Array[], cols: number, owner: Int32Array, local: Int32Array, bases: number[], widths: number[]): Scatter {
  return (v, first, n) => {
    for (let k = 0; k < n; k++) {
      const e = first + k;
      const i = Math.floor(e / cols);
      const j = e - i * cols;
      const s = owner[i];
      shards[s][bases[s] + j * widths[s] + local[i]] = v[k];
    }
  };
}

function scatters(config: GPT2Config, plan: ShardSlice[], common: Float32Array, shards: Float32Array[]): Map<string, Scatter> {
  const d = config.nEmbd;
  const hd = headDim(config);
  const cl = commonLayout(config);
  const layouts = plan.map((s) => shardLayout(config, s));
  const out = new Map<string, Scatter>();
  const copyTo = (buf: Float32Array, base: number): Scatter => (v, first, n) => buf.set(v.subarray(0, n), base + first);

  // Which shard owns head column c (0 ≤ c < d) and MLP column c (0 ≤ c < 4d), and where it is in that shard.
  const headOwner = new Int32Array(d);
  const headLocal = new Int32Array(d);
  const mlpOwner = new Int32Array(4 * d);
  const mlpLocal = new Int32Array(4 * d);
  for (const s of plan) {
    for (let c = s.heads[0] * hd; c < s.heads[1] * hd; c++) {
      headOwner[c] = s.index;
      headLocal[c] = c - s.heads[0] * hd;
    }
    for (let c = s.mlp[0]; c < s.mlp[1]; c++) {
      mlpOwner[c] = s.index;
      mlpLocal[c] = c - s.mlp[0];
    }
  }
  // c_attn's columns are [q | k | v], each d wide: column j of section s becomes row s·w + local.
  const qkvOwner = new Int32Array(3 * d);
  const qkvLocal = new Int32Array(3 * d);
  for (let j = 0; j < 3 * d; j++) {
    const col = j % d;
    qkvOwner[j] = headOwner[col];
    qkvLocal[j] = Math.floor(j / d) * layouts[headOwner[col]].attnWidth + headLocal[col];
  }
  const attnWidths = layouts.map((L) => L.attnWidth);
  const mlpWidths = layouts.map((L) => L.mlpWidth);

  out.set('wte.weight', copyTo(common, cl.wte));
  out.set('wpe.weight', copyTo(common, cl.wpe));
  out.set('ln_f.weight', copyTo(common, cl.lnfG));
  out.set('ln_f.bias', copyTo(common, cl.lnfB));

  for (let l = 0; l < config.nLayer; l++) {
    const h = `h.${l}.`;
    const c = cl.layers[l];
    const bases = (key: keyof ShardLayerLayout): number[] => layouts.map((L) => L.layers[l][key]);
    out.set(h + 'ln_1.weight', copyTo(common, c.ln1G));
    out.set(h + 'ln_1.bias', copyTo(common, c.ln1B));
    out.set(h + 'ln_2.weight', copyTo(common, c.ln2G));
    out.set(h + 'ln_2.bias', copyTo(common, c.ln2B));
    out.set(h + 'attn.c_proj.bias', copyTo(common, c.projB));
    out.set(h + 'mlp.c_proj.bias', copyTo(common, c.fc2B));
    out.set(h + 'attn.c_attn.weight', byColumn(shards, d, 3 * d, qkvOwner, qkvLocal, bases('qkvW')));
    out.set(h + 'attn.c_attn.bias', byColumn(shards, 1, 3 * d, qkvOwner, qkvLocal, bases('qkvB')));
    out.set(h + 'attn.c_proj.weight', byRow(shards, d, headOwner, headLocal, bases('projW'), attnWidths));
    out.set(h + 'mlp.c_fc.weight', byColumn(shards, d, 4 * d, mlpOwner, mlpLocal, bases('fcW')));
    out.set(h + 'mlp.c_fc.bias', byColumn(shards, 1, 4 * d, mlpOwner, mlpLocal, bases('fcB')));
    out.set(h + 'mlp.c_proj.weight', byRow(shards, d, mlpOwner, mlpLocal, bases('fc2W'), mlpWidths));
  }
  return out;
}

const CHUNK_BYTES = 1 << 22;

/**
 * Validates the header against the config, then streams every needed tensor into the buffers of
 * `plan`. Throws WeightsError naming the tensor or field at fault; a source read that fails or
 * comes back short is reported as a truncated file.
 */
export async function loadWeights(
  config: GPT2Config,
  source: ByteSource,
  plan: ShardSlice[],
  allocate: Allocate = allocatePlain,
  onProgress?: (p: LoadProgress) => void,
): Promise<LoadedWeights> {
  const header = await readHeader(source);
  const tensors = matchTensors(config, header);
  const common = allocate(commonLayout(config).floats);
  const shards = plan.map((s) => allocate(shardLayout(config, s).floats));
  const place = scatters(config, plan, common, shards);
  const bytesTotal = tensors.reduce((a, t) => a + t.info.end - t.info.begin, 0);
  let bytesRead = 0;
  const scratch = new Float32Array(CHUNK_BYTES / 2);
  for (const { name, info } of tensors) {
    const dtype = info.dtype;
    if (!isFloatDtype(dtype)) throw new WeightsError('dtype', name, `unreadable dtype ${dtype}`);
    const width = dtype === 'F32' ? 4 : 2;
    const scatter = place.get(name)!;
    for (let at = info.begin; at < info.end; at += CHUNK_BYTES) {
      const end = Math.min(info.end, at + CHUNK_BYTES);
      const bytes = await source.read(at, end);
      if (bytes.length !== end - at) {
        throw new WeightsError('truncated', name, `expected ${end - at} bytes at offset ${at}, the file gave ${bytes.length}`);
      }
      const n = bytes.length / width;
      decodeFloats(dtype, bytes, scratch, 0);
      let sum = 0;
      for (let k = 0; k < n; k++) sum += scratch[k] * 0; // NaN·0 and ∞·0 are NaN: one pass finds both
      if (sum !== 0) throw new WeightsError('values', name, 'holds NaN or infinite values');
      scatter(scratch, (at - info.begin) / width, n);
      bytesRead += end - at;
      onProgress?.({ bytesRead, bytesTotal });
    }
  }
  return { config, common, shards };
}
