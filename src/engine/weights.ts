import type { GPT2Config } from './config.ts';
import { headDim } from './config.ts';
import { WeightsError } from './errors.ts';
import type { SafetensorsHeader, TensorInfo } from './safetensors.ts';
import { decodeFloats, headerLength, isFloatDtype, parseHeader } from './safetensors.ts';
import type { ShardSlice } from './shard-plan.ts';
import { commonLayout, shardLayout } from './shard-plan.ts';

// Loads a Hugging Face GPT-2 checkpoint straight into the kernel layout of a shard plan:
// each tensor is streamed from the source in chunks, decoded to float32 and scattered to the
// buffer of the shard that owns it. Nothing is held twice, whatever the number of shards.

/** Random access to the bytes of a safetensors file: a file on disk, a Blob, IndexedDB chunks. */
export interface ByteSource {
  readonly size: number;
  read(begin: number, end: number): Promise<Uint8Array>;
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
      throw new WeightsError('shape', raw, `belongs to layer ${layer[1]} but config.json says n_layer = ${config.nLayer}`);
    }
    if (!expected.has(name)) continue; // attn.bias / attn.masked_bias buffers, the tied lm_head
    if (found.has(name)) throw new WeightsError('header-entry', raw, 'appears twice (with and without the transformer. prefix)');
    const shape = expected.get(name)!;
    if (!isFloatDtype(info.dtype)) {
      throw new WeightsError('dtype', raw, `dtype ${info.dtype} cannot be read as float32 (need F32, F16 or BF16)`);
    }
    if (info.shape.length !== shape.length || info.shape.some((s, i) => s !== shape[i])) {
      throw new WeightsError('shape', raw, `shape [${info.shape}] disagrees with config.json, which implies [${shape}]`);
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

/** Where one element (i, j) of an HF tensor of shape [rows, cols] goes. */
type Scatter = (values: Float32Array, first: number, count: number) => void;

function scatters(config: GPT2Config, plan: ShardSlice[], common: Float32Array, shards: Float32Array[]): Map<string, Scatter> {
  const d = config.nEmbd;
  const hd = headDim(config);
  const cl = commonLayout(config);
  const layouts = plan.map((s) => shardLayout(config, s));
  const out = new Map<string, Scatter>();
  const copyTo = (buf: Float32Array, base: number): Scatter => (v, first, n) => buf.set(v.subarray(0, n), base + first);

  // Which shard owns head column c (0 ≤ c < d) and MLP column c (0 ≤ c < 4d).
  const headOwner = new Int32Array(d);
  const mlpOwner = new Int32Array(4 * d);
  for (const s of plan) {
    for (let c = s.heads[0] * hd; c < s.heads[1] * hd; c++) headOwner[c] = s.index;
    for (let c = s.mlp[0]; c < s.mlp[1]; c++) mlpOwner[c] = s.index;
  }
  const headLocal = (c: number): number => c - plan[headOwner[c]].heads[0] * hd;
  const mlpLocal = (c: number): number => c - plan[mlpOwner[c]].mlp[0];

  out.set('wte.weight', copyTo(common, cl.wte));
  out.set('wpe.weight', copyTo(common, cl.wpe));
  out.set('ln_f.weight', copyTo(common, cl.lnfG));
  out.set('ln_f.bias', copyTo(common, cl.lnfB));

  for (let l = 0; l < config.nLayer; l++) {
    const h = `h.${l}.`;
    const c = cl.layers[l];
    out.set(h + 'ln_1.weight', copyTo(common, c.ln1G));
    out.set(h + 'ln_1.bias', copyTo(common, c.ln1B));
    out.set(h + 'ln_2.weight', copyTo(common, c.ln2G));
    out.set(h + 'ln_2.bias', copyTo(common, c.ln2B));
    out.set(h + 'attn.c_proj.bias', copyTo(common, c.projB));
    out.set(h + 'mlp.c_proj.bias', copyTo(common, c.fc2B));

    // c_attn columns are [q | k | v], each d wide; column j of section s goes to row s·w + local of its shard.
    const qkvRow = new Int32Array(3 * d);
    const qkvShard = new Int32Array(3 * d);
    for (let j = 0; j < 3 * d; j++) {
      const s = Math.floor(j / d);
      const col = j % d;
      qkvShard[j] = headOwner[col];
      qkvRow[j] = s * layouts[headOwner[col]].attnWidth + headLocal(col);
    }
    out.set(h + 'attn.c_attn.bias', (v, first, n) => {
      for (let k = 0; k < n; k++) {
        const j = first + k;
        shards[qkvShard[j]][layouts[qkvShard[j]].layers[l].qkvB + qkvRow[j]] = v[k];
      }
    });
    out.set(h + 'attn.c_attn.weight', (v, first, n) => {
      // HF Conv1D weight is [in = d, out = 3d]; ours is [out, in].
      for (let k = 0; k < n; k++) {
        const e = first + k;
        const i = Math.floor(e / (3 * d));
        const j = e - i * 3 * d;
        const s = qkvShard[j];
        shards[s][layouts[s].layers[l].qkvW + qkvRow[j] * d + i] = v[k];
      }
    });
    out.set(h + 'attn.c_proj.weight', (v, first, n) => {
      // [in = d (heads), out = d]: input row i belongs to the shard of its head.
      for (let k = 0; k < n; k++) {
        const e = first + k;
        const i = Math.floor(e / d);
        const j = e - i * d;
        const s = headOwner[i];
        const lay = layouts[s];
        shards[s][lay.layers[l].projW + j * lay.attnWidth + headLocal(i)] = v[k];
      }
    });
    out.set(h + 'mlp.c_fc.bias', (v, first, n) => {
      for (let k = 0; k < n; k++) {
        const j = first + k;
        const s = mlpOwner[j];
        shards[s][layouts[s].layers[l].fcB + mlpLocal(j)] = v[k];
      }
    });
    out.set(h + 'mlp.c_fc.weight', (v, first, n) => {
      // [in = d, out = 4d]
      for (let k = 0; k < n; k++) {
        const e = first + k;
        const i = Math.floor(e / (4 * d));
        const j = e - i * 4 * d;
        const s = mlpOwner[j];
        shards[s][layouts[s].layers[l].fcW + mlpLocal(j) * d + i] = v[k];
      }
    });
    out.set(h + 'mlp.c_proj.weight', (v, first, n) => {
      // [in = 4d, out = d]: input row i belongs to the shard of its MLP column.
      for (let k = 0; k < n; k++) {
        const e = first + k;
        const i = Math.floor(e / d);
        const j = e - i * d;
        const s = mlpOwner[i];
        const lay = layouts[s];
        shards[s][lay.layers[l].fc2W + j * lay.mlpWidth + mlpLocal(i)] = v[k];
      }
    });
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
