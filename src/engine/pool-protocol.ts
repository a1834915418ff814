import type { GPT2Config } from './config.ts';
import type { ShardSlice } from './shard-plan.ts';

// What the coordinator and the shard workers agree on. Comlink carries the control plane
// (init, serve, and the per-layer calls of the 'comlink' sync mode); in the 'atomics' mode each
// layer step is one write to the control words below plus Atomics.notify, and the reply is a
// per-shard acknowledgement: no message, no allocation, no event-loop turn per layer.
//
// The one rule both sides keep: a command is identified by its sequence number, and a shard
// runs each sequence number exactly once. Atomics.wait can return for a notify that belongs to
// a command the shard has already run (the coordinator may be preempted between bumping SEQ and
// notifying), so a wake-up alone never means "run again".

/** Indices into the control Int32Array (a SharedArrayBuffer shared by every shard). */
export const SEQ = 0; // bumped by the coordinator for every command
export const CMD = 1;
export const ROWS = 2;
export const POS = 3;
export const LAYER = 4;
export const DONE = 5; // bumped by a shard after every acknowledgement: the word the coordinator sleeps on
export const READY = 6; // shards that have entered their serve loop
// Per shard s: ANSWER + 2s holds the sequence number it last answered, ANSWER + 2s + 1 the one it
// last failed. Sequence numbers are only ever compared for equality, so wrapping around is harmless.
const ANSWER = 7;

export const controlWords = (shards: number): number => ANSWER + 2 * shards;

export const CMD_ATTENTION = 1;
export const CMD_MLP = 2;
export const CMD_LOGITS = 3;
export const CMD_STOP = 4;

/** Coordinator side: writes a command's arguments, then makes it visible under a new sequence number. */
export function publish(c: Int32Array, cmd: number, rows: number, pos: number, layer: number): number {
  Atomics.store(c, CMD, cmd);
  Atomics.store(c, ROWS, rows);
  Atomics.store(c, POS, pos);
  Atomics.store(c, LAYER, layer);
  const seq = (Atomics.add(c, SEQ, 1) + 1) | 0;
  Atomics.notify(c, SEQ);
  return seq;
}

/** Shard side: blocks until a sequence number after `seen` is published and returns it. */
export function nextCommand(c: Int32Array, seen: number): number {
  let seq = Atomics.load(c, SEQ);
  while (seq === seen) {
    Atomics.wait(c, SEQ, seen);
    seq = Atomics.load(c, SEQ);
  }
  return seq;
}

/** Shard side: says shard `s` finished (or, with ok = false, failed) command `seq`. */
export function acknowledge(c: Int32Array, s: number, seq: number, ok: boolean): void {
  if (!ok) Atomics.store(c, ANSWER + 2 * s + 1, seq);
  Atomics.store(c, ANSWER + 2 * s, seq);
  Atomics.add(c, DONE, 1);
  Atomics.notify(c, DONE);
}

export type Answers = 'pending' | 'done' | 'failed';

/** Coordinator side: whether every one of `shards` has answered command `seq`. */
export function answers(c: Int32Array, shards: number, seq: number): Answers {
  let failed = false;
  for (let s = 0; s < shards; s++) {
    if (Atomics.load(c, ANSWER + 2 * s) !== seq) return 'pending';
    if (Atomics.load(c, ANSWER + 2 * s + 1) === seq) failed = true;
  }
  return failed ? 'failed' : 'done';
}

/** The shards that have not answered command `seq` yet, or with `failed`, those that failed it. */
export function shardsThat(c: Int32Array, shards: number, seq: number, what: 'are-silent' | 'failed'): number[] {
  const out: number[] = [];
  const word = what === 'failed' ? ANSWER + 1 : ANSWER;
  for (let s = 0; s < shards; s++) if ((Atomics.load(c, word + 2 * s) === seq) === (what === 'failed')) out.push(s);
  return out;
}

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
  /** Builds the shard over the shared buffers and allocates its KV cache. */
  init(setup: ShardSetup): void;
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
