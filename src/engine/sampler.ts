import { Prng } from './prng.ts';

export interface SamplerOptions {
  /** 0 = greedy (argmax); otherwise logits are divided by it (one too small to sample from acts as greedy). */
  temperature: number;
  /** Keep only the k most likely tokens; 0 = off. */
  topK: number;
  /** Keep the smallest set of tokens whose probability reaches p; 1 = off. */
  topP: number;
  /** CTRL-style penalty on tokens already in the context; 1 = off. */
  repetitionPenalty: number;
  seed: number;
}

export const GREEDY: SamplerOptions = { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 };

export function checkSamplerOptions(o: SamplerOptions): void {
  const bad = (what: string): never => {
    throw new RangeError(what);
  };
  if (!(o.temperature >= 0 && o.temperature <= 100)) bad(`temperature must be in [0, 100], got ${o.temperature}`);
  if (!(Number.isInteger(o.topK) && o.topK >= 0)) bad(`top-k must be a non-negative integer, got ${o.topK}`);
  if (!(o.topP > 0 && o.topP <= 1)) bad(`top-p must be in (0, 1], got ${o.topP}`);
  if (!(o.repetitionPenalty > 0 && o.repetitionPenalty <= 100)) bad(`repetition penalty must be in (0, 100], got ${o.repetitionPenalty}`);
  if (!Number.isInteger(o.seed)) bad(`seed must be an integer, got ${o.seed}`);
}

export interface Sample {
  id: number;
  /** log p(id) under the model's own distribution (raw logits, before any sampling setting). */
  logprob: number;
}

/**
 * Picks the next token from the logits. All scratch is sized to the vocabulary once; a step
 * allocates nothing. Candidates for top-k / top-p are found with a bounded heap, not a full sort.
 */
export class Sampler {
  private readonly work: Float32Array;
  private readonly seen: Uint8Array;
  private readonly heap: Int32Array;
  private readonly rng: Prng;

  constructor(readonly vocabSize: number, readonly options: SamplerOptions) {
    checkSamplerOptions(options);
    this.work = new Float32Array(vocabSize);
    this.seen = new Uint8Array(vocabSize);
    this.heap = new Int32Array(vocabSize);
    this.rng = new Prng(options.seed);
  }

  /** `context` is every token id the model has seen so far (for the repetition penalty). */
  sample(logits: Float32Array, context: ArrayLike<number>): Sample {
    const { work, options: o } = this;
    const V = this.vocabSize;
    work.set(logits);
    if (o.repetitionPenalty !== 1) this.penalize(context);
    let id: number;
    const best = argmax(work, V);
    const inv = 1 / o.temperature;
    if (!Number.isFinite(inv)) {
      // Temperature 0, or one so small that 1/T overflows: greedy.
      id = best;
    } else {
      // Scale the differences to the best logit, never the logits themselves: logit/1e-300
      // overflows float32 to ±Infinity (and Infinity − Infinity is NaN, which sampled token 0);
      // a difference only goes to −Infinity, a probability of exactly 0. A temperature that
      // small leaves the best token alone: it acts as greedy.
      const max = work[best];
      for (let i = 0; i < V; i++) work[i] = (work[i] - max) * inv;
      id = this.draw();
    }
    return { id, logprob: logSoftmaxAt(logits, V, id) };
  }

  private penalize(context: ArrayLike<number>): void {
    const { work, seen } = this;
    const p = this.options.repetitionPenalty;
    for (let i = 0; i < context.length; i++) {
      const t = context[i];
      if (seen[t]) continue;
      seen[t] = 1;
      work[t] = work[t] > 0 ? work[t] / p : work[t] * p;
    }
    for (let i = 0; i < context.length; i++) seen[context[i]] = 0;
  }

  /** Samples from softmax(work) restricted by top-k and top-p. */
  private draw(): number {
    const { work, heap, options: o } = this;
    const V = this.vocabSize;
    const max = work[argmax(work, V)];
    let total = 0;
    for (let i = 0; i < V; i++) total += Math.exp(work[i] - max);
    const limit = o.topK > 0 ? Math.min(o.topK, V) : V;
    if (limit === V && o.topP >= 1) {
      let r = this.rng.next() * total;
      for (let i = 0; i < V; i++) {
        r -= Math.exp(work[i] - max);
        if (r <= 0) return i;
      }
      return argmax(work, V);
    }
    // Grow the candidate set until it is top-k, or until it holds probability mass top-p.
    let k = Math.min(limit, 64);
    let keep = k;
    for (;;) {
      topIndices(work, V, k, heap);
      keep = k;
      if (o.topP < 1) {
        const target = o.topP * total;
        let mass = 0;
        for (let i = 0; i < k; i++) {
          mass += Math.exp(work[heap[i]] - max);
          if (mass >= target) {
            keep = i + 1;
            break;
          }
        }
        if (keep === k && mass < target && k < limit) {
          k = Math.min(limit, k * 4);
          continue;
        }
      }
      break;
    }
    let mass = 0;
    for (let i = 0; i < keep; i++) mass += Math.exp(work[heap[i]] - max);
    let r = this.rng.next() * mass;
    for (let i = 0; i < keep; i++) {
      r -= Math.exp(work[heap[i]] - max);
      if (r <= 0) return heap[i];
    }
    return heap[0];
  }
}

export function argmax(x: Float32Array, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** log softmax(x)[id], in two passes over x. */
export function logSoftmaxAt(x: Float32Array, n: number, id: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(x[i] - max);
  return x[id] - max - Math.log(sum);
}

/**
 * Writes the indices of the k largest values of x[0..n) into out[0..k), largest first,
 * ties broken by the lower index. A min-heap of size k: O(n log k).
 */
export function topIndices(x: Float32Array, n: number, k: number, out: Int32Array): void {
  for (let i = 0; i < k; i++) out[i] = i;
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(x, out, k, i);
  for (let i = k; i < n; i++) {
    if (worse(x, out[0], i)) {
      out[0] = i;
      siftDown(x, out, k, 0);
    }
  }
  // Heap-sort in place: repeatedly move the worst to the end → best first.
  for (let size = k - 1; size > 0; size--) {
    const t = out[0];
    out[0] = out[size];
    out[size] = t;
    siftDown(x, out, size, 0);
  }
}

/** Whether candidate a ranks below b: a smaller value, or an equal value at a higher index. */
function worse(x: Float32Array, a: number, b: number): boolean {
  return x[a] < x[b] || (x[a] === x[b] && a > b);
}

/** Restores the min-heap (worst candidate at the root) below node i of heap[0..size). */
function siftDown(x: Float32Array, heap: Int32Array, size: number, i: number): void {
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let m = i;
    if (l < size && worse(x, heap[l], heap[m])) m = l;
    if (r < size && worse(x, heap[r], heap[m])) m = r;
    if (m === i) return;
    const t = heap[i];
    heap[i] = heap[m];
    heap[m] = t;
    i = m;
  }
}
