import type { GPT2Config } from './config.ts';

/** Which engine runs a decoder: how the UI and the CLI report it. */
export interface DecoderMode {
  kind: 'reference' | 'pool' | 'fallback';
  /** Shard workers (0 for the single-thread reference). */
  workers: number;
  /** How a layer's steps are synchronised with the workers. */
  sync: 'none' | 'atomics' | 'comlink';
  sharedMemory: boolean;
}

/**
 * A GPT-2 with a KV cache: the one interface generation needs, implemented by the single-thread
 * reference and by the worker pool alike.
 */
export interface Decoder {
  readonly config: GPT2Config;
  readonly mode: DecoderMode;
  /** Tokens currently held in the KV cache (the next token's position). */
  readonly position: number;
  /**
   * Appends `ids` at `position` (prefill when many, decode when one) and returns the logits
   * [vocab] of the last one. The array is reused by the next call. An abort during the step
   * throws AbortError and leaves the cache as it was before the step.
   */
  step(ids: ArrayLike<number>, signal?: AbortSignal): Promise<Float32Array>;
  /** Forgets every token from `position` on, so decoding resumes there. */
  rollback(position: number): void;
  dispose(): Promise<void>;
}
