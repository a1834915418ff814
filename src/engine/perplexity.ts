import type { Decoder } from './decoder.ts';

// Perplexity, as llama.cpp's llama-perplexity reports it: how surprised the model is by a text.
// The ids are cut into consecutive windows of n_positions tokens (the last one shorter); each
// window runs from an empty cache, and every position but the window's first is scored by the
// log-probability the model gave the id that actually follows.

export interface Perplexity {
  /** Positions scored: every id but the first of each window. */
  tokens: number;
  /** Mean negative log-likelihood, nats per token. */
  nll: number;
  /** exp(nll). */
  ppl: number;
}

export interface PerplexityProgress {
  window: number;
  windows: number;
  tokensScored: number;
  tokensTotal: number;
}

/** log Σ exp(logits), in float64. */
function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let v = 0; v < logits.length; v++) if (logits[v] > max) max = logits[v];
  let sum = 0;
  for (let v = 0; v < logits.length; v++) sum += Math.exp(logits[v] - max);
  return max + Math.log(sum);
}

export async function perplexity(
  decoder: Decoder,
  ids: readonly number[],
  onProgress?: (p: PerplexityProgress) => void,
  signal?: AbortSignal,
): Promise<Perplexity> {
  const window = decoder.config.nPositions;
  const windows = Math.ceil(ids.length / window);
  const tokensTotal = ids.length - windows;
  if (tokensTotal < 1) throw new RangeError(`the text is ${ids.length} token${ids.length === 1 ? '' : 's'} long: perplexity needs at least two`);
  let nllSum = 0;
  let tokensScored = 0;
  const one = [0];
  for (let w = 0; w < windows; w++) {
    const begin = w * window;
    const end = Math.min(ids.length, begin + window);
    decoder.rollback(0);
    // Decode step by step: each step's logits score the next id of the window.
    for (let t = begin; t < end - 1; t++) {
      one[0] = ids[t];
      const logits = await decoder.step(one, signal);
      nllSum += logSumExp(logits) - logits[ids[t + 1]];
      tokensScored++;
    }
    onProgress?.({ window: w + 1, windows, tokensScored, tokensTotal });
  }
  const nll = nllSum / tokensScored;
  return { tokens: tokensScored, nll, ppl: Math.exp(nll) };
}
