import { WeightsError } from './errors.ts';
import { displayText, displayValue } from './untrusted-text.ts';

/** The hyperparameters of a GPT-2 checkpoint, as named in Hugging Face's config.json. */
export interface GPT2Config {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  nPositions: number;
  vocabSize: number;
  layerNormEpsilon: number;
  /** Token id that ends generation (<|endoftext|> = 50256 for every GPT-2 checkpoint). */
  eosTokenId: number;
}

/**
 * Largest config.json accepted: a GPT-2 config is under a kilobyte, and Hugging Face's with every
 * extra field a few kilobytes. A bound, so an endless or huge file is refused, not read.
 */
export const MAX_CONFIG_BYTES = 1 << 20;

function positiveInt(raw: Record<string, unknown>, field: string, max: number, fallback?: string): number {
  let v = raw[field];
  if (v === undefined && fallback !== undefined) v = raw[fallback];
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > max) {
    throw new WeightsError('config', field, `expected an integer in 1..${max}, got ${displayValue(v)}`);
  }
  return v;
}

/** Validates a parsed or textual config.json. Unknown fields are ignored, as HF configs carry many. */
export function parseConfig(source: string | unknown): GPT2Config {
  let raw: unknown = source;
  if (typeof source === 'string' && source.length > MAX_CONFIG_BYTES) {
    throw new WeightsError('config', 'config.json', `is ${source.length} characters long; a GPT-2 config.json is a few hundred (limit ${MAX_CONFIG_BYTES})`);
  }
  if (typeof source === 'string') {
    try {
      raw = JSON.parse(source);
    } catch (e) {
      throw new WeightsError('config', 'config.json', `not valid JSON (${displayText((e as Error).message)})`);
    }
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new WeightsError('config', 'config.json', 'expected a JSON object');
  }
  const r = raw as Record<string, unknown>;
  if (r.model_type !== undefined && r.model_type !== 'gpt2') {
    throw new WeightsError('config', 'model_type', `only "gpt2" models are supported, got ${displayValue(r.model_type)}`);
  }
  const nLayer = positiveInt(r, 'n_layer', 256);
  const nHead = positiveInt(r, 'n_head', 256);
  const nEmbd = positiveInt(r, 'n_embd', 16384);
  const nPositions = positiveInt(r, 'n_positions', 65536, 'n_ctx');
  const vocabSize = positiveInt(r, 'vocab_size', 1 << 20);
  if (nEmbd % nHead !== 0) {
    throw new WeightsError('config', 'n_head', `n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  }
  const eps = r.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0 && eps < 1)) {
    throw new WeightsError('config', 'layer_norm_epsilon', `expected a small positive number, got ${displayValue(eps)}`);
  }
  if (r.n_inner !== undefined && r.n_inner !== null && r.n_inner !== 4 * nEmbd) {
    throw new WeightsError('config', 'n_inner', `only the GPT-2 MLP width 4·n_embd = ${4 * nEmbd} is supported`);
  }
  const act = r.activation_function;
  // GPT-2 uses the tanh form of GELU; an erf-GELU fine-tune would silently drift, so refuse it.
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new WeightsError('config', 'activation_function', `unsupported activation ${displayValue(act)}`);
  }
  const eos = r.eos_token_id ?? 50256;
  if (typeof eos !== 'number' || !Number.isInteger(eos) || eos < 0 || eos >= vocabSize) {
    throw new WeightsError('config', 'eos_token_id', `expected a token id below vocab_size, got ${displayValue(eos)}`);
  }
  return { nLayer, nHead, nEmbd, nPositions, vocabSize, layerNormEpsilon: eps, eosTokenId: eos };
}

/** Head width. */
export const headDim = (c: GPT2Config): number => c.nEmbd / c.nHead;
