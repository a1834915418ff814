import type { GPT2Config } from './config.ts';
import type { DecoderMode } from './decoder.ts';
import type { GeneratedToken, GenerationSummary } from './generate.ts';
import type { SamplerOptions } from './sampler.ts';

// The engine's control plane as the page sees it: the methods the engine worker exposes through
// Comlink (workers/engine.worker.ts) and `src/engine/client.ts` wraps. Only plain data crosses it:
// token ids and text go in, tokens and numbers come out; no matrix ever reaches the page.

/** Where the engine worker reads a model's weights from. */
export type ModelLocation =
  /** A model stored in the app's IndexedDB model store, by its store id. */
  | { kind: 'stored'; modelId: string }
  /** Files handed over directly (tests, a file the user just picked). */
  | { kind: 'files'; name: string; config: string; weights: Blob };

export interface LoadRequest {
  location: ModelLocation;
  /** Shard workers; 0 = the default (one per core), -1 = the single-thread reference. */
  workers: number;
}

export interface LoadProgress {
  phase: 'reading' | 'starting-workers';
  bytesRead: number;
  bytesTotal: number;
}

export interface ModelInfo {
  name: string;
  config: GPT2Config;
  mode: DecoderMode;
  /** Wall-clock milliseconds from the load request to a ready engine. */
  loadMs: number;
  /** Bytes of float32 weights held in memory. */
  weightBytes: number;
}

export interface GenerateRequest {
  /** The rendered prompt as token ids (chat templates render to ids, with <|endoftext|> separators). */
  prompt: number[];
  maxTokens: number;
  sampler: SamplerOptions;
  /** Stop when the reply's text contains one of these (not emitted). */
  stopSequences?: string[];
  /** Token that ends the reply; default the model's <|endoftext|>; null = never. */
  eosTokenId?: number | null;
}

/** Streamed to the page as the reply grows. */
export interface TokenEvent extends GeneratedToken {
  /** Tokens in the KV cache after this one (prompt + reply so far). */
  position: number;
}

export interface GenerateResult extends GenerationSummary {
  /** Tokens generated per second after the first. */
  tokensPerSecond: number;
}

export interface EngineApi {
  load(request: LoadRequest, onProgress?: (p: LoadProgress) => void): Promise<ModelInfo>;
  /**
   * Streams a reply. `onToken` is called for every token; `onTruncated` when the prompt had to
   * lose its oldest tokens to fit the window. Resolves when the reply ends (also when aborted).
   */
  generate(
    request: GenerateRequest,
    onToken: (t: TokenEvent) => void,
    onTruncated?: (dropped: number, kept: number) => void,
  ): Promise<GenerateResult>;
  /** Stops the reply in progress within one token's time. */
  abort(): void;
  /** Frees the model and the workers. */
  unload(): Promise<void>;
}
