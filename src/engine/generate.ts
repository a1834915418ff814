import type { Decoder } from './decoder.ts';
import type { SamplerOptions } from './sampler.ts';
import { Sampler, topIndices } from './sampler.ts';
import { MAX_ROWS } from './shard.ts';
import { StreamingDetokenizer } from './tokenizer.ts';

// Generation: prompt in, an async stream of tokens out. A Session remembers which tokens its
// decoder's KV cache holds, so a prompt that shares a prefix with the previous one (the same
// conversation one turn later, a regenerated reply) only runs the tokens after that prefix.

export interface GeneratedToken {
  id: number;
  /** Text this token completes: '' while a multi-byte character or a possible stop sequence is pending. */
  text: string;
  /** log p(id) under the model's distribution at this step. */
  logprob: number;
  /** With `topLogits: n`: the n largest raw logits of this step as [id, logit]. */
  top?: Array<[number, number]>;
}

export type StopReason = 'eos' | 'max-tokens' | 'context-full' | 'stop-sequence' | 'aborted';

export interface GenerationSummary {
  stopReason: StopReason;
  /** Prompt tokens after any truncation. */
  promptTokens: number;
  /** Prompt tokens dropped from the front because the prompt did not fit the window. */
  droppedTokens: number;
  /** Prompt tokens whose keys and values were already in the KV cache. */
  reusedTokens: number;
  generatedTokens: number;
  /** Milliseconds to run the prompt (the part not reused) and to produce the first token. */
  prefillMs: number;
  /** Milliseconds spent on the tokens after the first. */
  decodeMs: number;
}

export interface GenerateOptions {
  maxTokens: number;
  sampler: SamplerOptions;
  signal?: AbortSignal;
  /** Stop at this token (default: the config's end-of-text); null never stops on a token. */
  eosTokenId?: number | null;
  /** Stop when the text contains one of these; the stop text itself is not emitted. */
  stopSequences?: string[];
  /** Told how many prompt tokens were dropped to fit the window (only called when some were). */
  onPromptTruncated?: (dropped: number, kept: number) => void;
  /** Report the top n raw logits of each step (for checking the engine from outside). */
  topLogits?: number;
}

export class AbortError extends Error {
  override readonly name = 'AbortError';
  constructor() {
    super('generation was aborted');
  }
}

/** A decoder plus the token ids its KV cache currently holds. */
export class Session {
  private cached: number[] = [];

  constructor(readonly decoder: Decoder) {}

  /** Tokens held in the KV cache, oldest first. */
  get tokens(): readonly number[] {
    return this.cached;
  }

  /** Forgets the cache (after a worker crash, a model switch). */
  reset(): void {
    this.cached = [];
    this.decoder.rollback(0);
  }

  /**
   * Makes the cache hold exactly `ids` and returns the logits of the last one. Reuses the longest
   * common prefix with what is cached; checks `signal` between prefill chunks.
   */
  async prefill(ids: readonly number[], signal?: AbortSignal): Promise<{ logits: Float32Array; reused: number }> {
    if (ids.length === 0) throw new RangeError('the prompt is empty');
    let common = 0;
    const max = Math.min(this.cached.length, ids.length, this.decoder.position);
    while (common < max && this.cached[common] === ids[common]) common++;
    // The last token must run again: its logits are the ones we need.
    if (common === ids.length) common--;
    this.decoder.rollback(common);
    this.cached.length = common;
    let logits: Float32Array | null = null;
    for (let from = common; from < ids.length; from += MAX_ROWS) {
      if (signal?.aborted) throw new AbortError();
      const chunk = ids.slice(from, Math.min(ids.length, from + MAX_ROWS));
      logits = await this.step(chunk, signal);
    }
    return { logits: logits!, reused: common };
  }

  /** Appends tokens to the cache. */
  async step(ids: number[], signal?: AbortSignal): Promise<Float32Array> {
    const before = this.cached.length;
    try {
      const logits = await this.decoder.step(ids, signal);
      for (const id of ids) this.cached.push(id);
      return logits;
    } catch (e) {
      // A failed step leaves the cache in an unknown state past `before`.
      this.cached.length = Math.min(before, this.decoder.position);
      throw e;
    }
  }
}

/**
 * How many prompt tokens to keep: the most recent ones, leaving room for part of the reply, and
 * never none: the last token's logits give the first reply token even when nothing else fits
 * (a window of one token keeps one and answers with one).
 */
export function fitPrompt(promptLength: number, window: number, maxTokens: number): number {
  if (promptLength < window) return promptLength;
  const reserve = Math.max(1, Math.min(maxTokens, window >> 2));
  return Math.max(1, window - reserve);
}

/** Holds back text that might be the start of a stop sequence. */
class StopMatcher {
  private pending = '';
  /** Whether the reply has said anything yet: whitespace before that is no stop (an empty reply is no reply). */
  private started = false;
  constructor(private readonly stops: string[]) {}

  /** Returns [text safe to emit, whether a stop sequence was completed]. */
  push(text: string): [string, boolean] {
    if (!this.started) {
      const first = text.search(/\S/);
      if (first < 0) return [text, false];
      this.started = true;
      const lead = text.slice(0, first);
      const [rest, stopped] = this.push(text.slice(first));
      return [lead + rest, stopped];
    }
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return [out, true];
    }
    // Keep the longest suffix that is a proper prefix of some stop sequence.
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > keep; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    const out = this.pending.slice(0, this.pending.length - keep);
    this.pending = this.pending.slice(this.pending.length - keep);
    return [out, false];
  }

  flush(): string {
    const out = this.pending;
    this.pending = '';
    return out;
  }
}

/**
 * Streams the reply to `prompt` token by token. Stops on the end-of-text token, after
 * `maxTokens`, when the window is full, on a stop sequence, or when `signal` aborts (then the
 * stream ends normally with stopReason 'aborted'). The generator's return value summarizes the run.
 */
export async function* generate(
  session: Session,
  prompt: readonly number[],
  options: GenerateOptions,
): AsyncGenerator<GeneratedToken, GenerationSummary, undefined> {
  const { decoder } = session;
  const config = decoder.config;
  const window = config.nPositions;
  if (!Number.isInteger(options.maxTokens) || options.maxTokens < 1) {
    throw new RangeError(`max tokens must be a positive integer, got ${options.maxTokens}`);
  }
  const sampler = new Sampler(config.vocabSize, options.sampler);
  const eos = options.eosTokenId === undefined ? config.eosTokenId : options.eosTokenId;
  const keep = fitPrompt(prompt.length, window, options.maxTokens);
  const dropped = prompt.length - keep;
  const ids = prompt.slice(dropped);
  if (dropped > 0) options.onPromptTruncated?.(dropped, keep);

  const summary: GenerationSummary = {
    stopReason: 'max-tokens', promptTokens: ids.length, droppedTokens: dropped, reusedTokens: 0,
    generatedTokens: 0, prefillMs: 0, decodeMs: 0,
  };
  const detok = new StreamingDetokenizer();
  const stops = options.stopSequences?.filter((s) => s.length > 0) ?? [];
  const matcher = stops.length > 0 ? new StopMatcher(stops) : null;
  const nTop = options.topLogits ?? 0;
  const topScratch = nTop > 0 ? new Int32Array(nTop) : null;
  const signal = options.signal;

  const started = performance.now();
  let logits: Float32Array;
  try {
    const r = await session.prefill(ids, signal);
    logits = r.logits;
    summary.reusedTokens = r.reused;
  } catch (e) {
    if (e instanceof AbortError) {
      summary.stopReason = 'aborted';
      return summary;
    }
    throw e;
  }
  let firstAt = 0;
  const context = session.tokens as number[];
  const one = [0];

  for (;;) {
    if (signal?.aborted) {
      summary.stopReason = 'aborted';
      break;
    }
    const { id, logprob } = sampler.sample(logits, context);
    const token: GeneratedToken = { id, text: '', logprob };
    if (topScratch) {
      topIndices(logits, config.vocabSize, nTop, topScratch);
      token.top = Array.from(topScratch, (t) => [t, logits[t]] as [number, number]);
    }
    summary.generatedTokens++;
    if (summary.generatedTokens === 1) {
      firstAt = performance.now();
      summary.prefillMs = firstAt - started;
    }
    const isEos = eos !== null && id === eos;
    // The reply ends here unless this token can be fed back: flush what is held back with it.
    const last = isEos || summary.generatedTokens >= options.maxTokens || decoder.position >= window;
    let text = isEos ? '' : detok.push(id);
    let stopped = false;
    if (matcher) [text, stopped] = matcher.push(text);
    if (last && !stopped) text += detok.flush() + (matcher?.flush() ?? '');
    token.text = text;
    yield token;
    if (stopped) {
      summary.stopReason = 'stop-sequence';
      break;
    }
    if (last) {
      summary.stopReason = isEos ? 'eos' : summary.generatedTokens >= options.maxTokens ? 'max-tokens' : 'context-full';
      break;
    }
    if (signal?.aborted) {
      summary.stopReason = 'aborted';
      break;
    }
    one[0] = id;
    try {
      logits = await session.step(one, signal);
    } catch (e) {
      if (!(e instanceof AbortError)) throw e;
      summary.stopReason = 'aborted';
      break;
    }
  }
  summary.decodeMs = firstAt > 0 ? performance.now() - firstAt : 0;
  return summary;
}
