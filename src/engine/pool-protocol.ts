import type { GPT2Config } from './config.ts';
import type { ShardSlice } from './shard-plan.ts';

// What the coordinator and the shard workers agree on. Comlink carries the control plane
// (init, serve, and the per-layer calls of the 'comlink' sync mode); in the 'atomics' mode each
// layer step is one write to the control words below plus Atomics.notify, and the reply is an
// Atomics.add on DONE: no message, no allocation, no event-loop turn per layer.

/** Indices into the control Int32Array (a SharedArrayBuffer shared by every shard). */
export const SEQ = 0; // bumped by the coordinator for every command
export const CMD = 1;
export const ROWS = 2;
export const POS = 3;
export const LAYER = 4;
export const DONE = 5; // shards that finished the current command
export const FAILED = 6; // shards that threw while running it
export const FAULT = 7; // 1 + the index of a shard that must throw at its next command (tests); 0 = none
export const READY = 8; // shards that have entered their serve loop
export const CONTROL_WORDS = 9;

export const CMD_ATTENTION = 1;
export const CMD_MLP = 2;
export const CMD_LOGITS = 3;
export const CMD_STOP = 4;

export interface ShardSetup {
  config: GPT2Config;
  slice: ShardSlice;
  /** Views over SharedArrayBuffers: posting them shares the memory, it does not copy it. */
  common: Float32Array;
  weights: Float32Array;
  input: Float32Array;
  partial: Float32Array;
  logits: Float32Array;
  control: Int32Array;
}

export interface ShardWorkerApi {
  /** Builds the shard over the shared buffers and allocates its KV cache. Returns the cache's bytes. */
  init(setup: ShardSetup): number;
  /** Runs commands from the control words until STOP. Blocks this worker; throws if a step does. */
  serve(): void;
  /** The 'comlink' sync mode: one message per layer step. */
  attention(T: number, pos: number, layer: number): void;
  mlp(T: number, layer: number): void;
  logits(): void;
}

/** A started worker, whatever the platform (Web Worker or worker_threads). */
export interface SpawnedWorker {
  /** A Comlink endpoint to it. */
  endpoint: import('comlink').Endpoint;
  /** Called once if the worker dies or reports an uncaught error. */
  onFailure(listener: (reason: string) => void): void;
  terminate(): Promise<void> | void;
}

export type SpawnShard = () => SpawnedWorker;

/**
 * The one-shot failure report every platform's worker wrapper needs: the first failure reaches
 * the listener, later ones and the exit caused by our own terminate() do not.
 */
export function failureSignal(): { fail(reason: string): void; onFailure(listener: (reason: string) => void): void; silence(): void } {
  let listener: ((reason: string) => void) | null = null;
  let done = false;
  return {
    fail(reason) {
      if (done) return;
      done = true;
      listener?.(reason);
    },
    onFailure(l) {
      listener = l;
    },
    silence() {
      done = true;
    },
  };
}
