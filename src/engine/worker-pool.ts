import * as Comlink from 'comlink';
import type { GPT2Config } from './config.ts';
import type { ShardGroup } from './coordinator.ts';
import type { DecoderMode } from './decoder.ts';
import { AbortError } from './generate.ts';
import {
  answers, CMD_ATTENTION, CMD_LOGITS, CMD_MLP, CMD_STOP, controlWords, DONE, publish, READY, shardsThat,
} from './pool-protocol.ts';
import type { ShardWorkerApi, SpawnedWorker, SpawnShard } from './pool-protocol.ts';
import { MAX_ROWS } from './shard.ts';
import type { ShardSlice } from './shard-plan.ts';
import type { LoadedWeights } from './weights.ts';

export type SyncMode = 'atomics' | 'comlink';

export class PoolError extends Error {
  override readonly name = 'PoolError';
}

export interface PoolOptions {
  sync: SyncMode;
  /** A command no shard has answered after this long is stuck: its worker is stopped and the pool restarted. */
  deadlineMs?: number;
  /** After an abort, how long a running command may still finish before its workers are stopped. */
  abortGraceMs?: number;
}

interface Member {
  spawned: SpawnedWorker;
  remote: Comlink.Remote<ShardWorkerApi>;
}

/** While blocked on the shards, look up every this many ms for a worker that died, an abort, a deadline. */
const WATCH_MS = 50;
const DEFAULT_DEADLINE_MS = 60_000;
const DEFAULT_ABORT_GRACE_MS = 1_000;
/** Starting a worker loads and compiles its code: on a busy machine that takes seconds, not milliseconds. */
const START_DEADLINE_MS = 60_000;

const shared = (floats: number): Float32Array => new Float32Array(new SharedArrayBuffer(floats * 4));
const macrotask = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

/**
 * N shard workers driven in lock step: a ShardGroup whose every call runs one layer step on all
 * shards in parallel. If a worker throws, dies or gets stuck, the call fails with a PoolError and
 * the workers are restarted over the same shared weights, with empty KV caches (`generation`
 * tells the coordinator so). A worker that dies between requests is replaced before the next one.
 */
export class WorkerPool implements ShardGroup {
  readonly input: Float32Array;
  readonly partials: Float32Array[];
  readonly logits: Float32Array;
  readonly mode: DecoderMode;
  /** The shared control words of the atomics hand-off (pool-protocol.ts). */
  readonly control: Int32Array;
  private readonly deadlineMs: number;
  private readonly abortGraceMs: number;
  private members: Member[] = [];
  /** Why the current workers cannot be trusted; null while they are healthy. */
  private failure: string | null = null;
  private restarting: Promise<void> | null = null;
  /** A command is in flight: a failure now belongs to it, not to the idle pool. */
  private busy = false;
  private disposed = false;
  generation = 0;

  private constructor(
    private readonly config: GPT2Config,
    private readonly plan: ShardSlice[],
    private readonly weights: LoadedWeights,
    private readonly spawn: SpawnShard,
    private readonly sync: SyncMode,
    options: PoolOptions,
  ) {
    const d = config.nEmbd;
    this.input = shared(MAX_ROWS * d);
    this.partials = plan.map(() => shared(MAX_ROWS * d));
    this.logits = shared(config.vocabSize);
    this.control = new Int32Array(new SharedArrayBuffer(controlWords(plan.length) * 4));
    this.mode = { kind: 'pool', workers: plan.length, sync, sharedMemory: true };
    this.deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS;
    this.abortGraceMs = options.abortGraceMs ?? DEFAULT_ABORT_GRACE_MS;
  }

  /** `weights` must be loaded into SharedArrayBuffers with `plan`. */
  static async start(config: GPT2Config, plan: ShardSlice[], weights: LoadedWeights, spawn: SpawnShard, options: PoolOptions): Promise<WorkerPool> {
    if (!(weights.common.buffer instanceof SharedArrayBuffer)) throw new PoolError('the worker pool needs weights in SharedArrayBuffers');
    const pool = new WorkerPool(config, plan, weights, spawn, options.sync, options);
    await pool.startWorkers();
    return pool;
  }

  private async startWorkers(): Promise<void> {
    this.control.fill(0);
    this.failure = null;
    this.busy = true; // a failure while starting belongs to this start, which reports it

    this.members = this.plan.map((slice) => {
      const spawned = this.spawn();
      spawned.onFailure((reason) => this.fail(`shard ${slice.index}: ${reason}`));
      return { spawned, remote: Comlink.wrap<ShardWorkerApi>(spawned.endpoint) };
    });
    try {
      await this.guard(Promise.all(this.members.map((m, s) => m.remote.init({
        config: this.config, slice: this.plan[s], common: this.weights.common, weights: this.weights.shards[s],
        input: this.input, partial: this.partials[s], logits: this.logits, control: this.control,
      }))), null, START_DEADLINE_MS);
      if (this.sync === 'atomics') {
        this.members.forEach((m, s) => {
          m.remote.serve().catch((e: unknown) => this.fail(`shard ${s}: ${e instanceof Error ? e.message : String(e)}`));
        });
        const started = performance.now();
        while (Atomics.load(this.control, READY) < this.members.length) {
          if (this.failure !== null) throw new PoolError(this.failure);
          if (performance.now() - started > START_DEADLINE_MS) throw new PoolError(`the shard workers did not start within ${START_DEADLINE_MS} ms`);
          await new Promise((r) => setTimeout(r, 1));
        }
      }
    } catch (e) {
      const reason = `a shard worker failed to start (${e instanceof Error ? e.message : String(e)})`;
      // Until a start succeeds, every command must restart first: no command may run on no workers.
      this.failure ??= reason;
      this.generation++;
      await this.stopWorkers();
      throw new PoolError(reason);
    } finally {
      this.busy = false;
    }
  }

  /** A worker died or threw: its KV cache, and so the pool's, is gone. */
  private fail(reason: string): void {
    if (this.disposed || this.failure !== null) return;
    this.failure = reason;
    this.generation++;
    // Between requests nobody is waiting for this worker: replace it before the next request comes.
    if (!this.busy) this.restartSoon();
  }

  private restartSoon(): void {
    if (this.restarting !== null || this.disposed) return;
    const p = (async () => {
      try {
        await this.stopWorkers();
        await this.startWorkers();
      } finally {
        this.restarting = null;
      }
    })();
    p.catch(() => {}); // a failed restart is reported to the next command that awaits it
    this.restarting = p;
  }

  /** Stops the workers of a command that failed, got stuck or was aborted, and starts fresh ones. */
  private abandon(reason: string): void {
    if (this.failure === null) {
      this.failure = reason;
      this.generation++;
    }
    this.restartSoon();
  }

  attention(T: number, pos: number, layer: number, signal?: AbortSignal): void | Promise<void> {
    return this.sync === 'atomics' ? this.command(CMD_ATTENTION, T, pos, layer, signal) : this.viaComlink((r) => r.attention(T, pos, layer), signal);
  }

  mlp(T: number, layer: number, signal?: AbortSignal): void | Promise<void> {
    return this.sync === 'atomics' ? this.command(CMD_MLP, T, 0, layer, signal) : this.viaComlink((r) => r.mlp(T, layer), signal);
  }

  logitsOfFirstRow(signal?: AbortSignal): void | Promise<void> {
    return this.sync === 'atomics' ? this.command(CMD_LOGITS, 1, 0, 0, signal) : this.viaComlink((r) => r.logits(), signal);
  }

  /** Workers that are being replaced, or have failed and not been replaced yet, are replaced first. */
  private async afterRestart(retry: () => void | Promise<void>): Promise<void> {
    if (this.restarting === null) this.restartSoon();
    await this.restarting;
    await retry();
  }

  private command(cmd: number, T: number, pos: number, layer: number, signal: AbortSignal | undefined): void | Promise<void> {
    if (this.disposed) throw new PoolError('the worker pool was shut down');
    if (this.restarting !== null || this.failure !== null) return this.afterRestart(() => this.command(cmd, T, pos, layer, signal));
    const c = this.control;
    const n = this.members.length;
    this.busy = true;
    const seq = publish(c, cmd, T, pos, layer);
    for (;;) {
      const done = Atomics.load(c, DONE);
      const a = answers(c, n, seq);
      if (a === 'done') {
        this.busy = false;
        return;
      }
      if (a === 'failed') return this.failed(seq);
      // Block, but not forever: a worker that died never answers, and only the event loop tells us.
      if (Atomics.wait(c, DONE, done, WATCH_MS) === 'timed-out') return this.awaitAnswers(seq, signal);
    }
  }

  /** The slow path: the shards took longer than WATCH_MS, so let the event loop deliver failures and aborts. */
  private async awaitAnswers(seq: number, signal: AbortSignal | undefined): Promise<void> {
    const c = this.control;
    const n = this.members.length;
    const started = performance.now() - WATCH_MS;
    let abortedAt = -1;
    for (;;) {
      await macrotask();
      if (this.failure !== null) return this.failed(seq);
      const done = Atomics.load(c, DONE);
      const a = answers(c, n, seq);
      if (a === 'done') break;
      if (a === 'failed') return this.failed(seq);
      const now = performance.now();
      if (signal?.aborted && abortedAt < 0) abortedAt = now;
      if (abortedAt >= 0 && now - abortedAt > this.abortGraceMs) {
        this.busy = false;
        this.abandon('the reply was stopped while a shard was still computing');
        throw new AbortError();
      }
      if (now - started > this.deadlineMs) {
        const stuck = shardsThat(c, n, seq, 'are-silent').join(', ');
        this.busy = false;
        this.abandon(`shard ${stuck} did not answer within ${this.deadlineMs} ms`);
        throw new PoolError(`shard ${stuck} did not answer within ${this.deadlineMs} ms and was stopped; the pool restarts for the next request`);
      }
      Atomics.wait(c, DONE, done, WATCH_MS);
    }
    this.busy = false;
  }

  /** A shard threw or died during command `seq`: wait briefly for its reason, then fail this request. */
  private async failed(seq: number): Promise<never> {
    for (let i = 0; i < 20 && this.failure === null; i++) await new Promise((r) => setTimeout(r, 10));
    const reason = this.failure ?? `shard ${shardsThat(this.control, this.members.length, seq, 'failed').join(', ')} threw`;
    this.busy = false;
    this.abandon(reason);
    throw new PoolError(`a shard worker failed (${reason}); the pool restarts for the next request`);
  }

  private async viaComlink(call: (r: Comlink.Remote<ShardWorkerApi>) => Promise<void>, signal: AbortSignal | undefined): Promise<void> {
    if (this.disposed) throw new PoolError('the worker pool was shut down');
    if (this.restarting !== null || this.failure !== null) return this.afterRestart(() => this.viaComlink(call, signal));
    this.busy = true;
    try {
      await this.guard(Promise.all(this.members.map((m) => call(m.remote))), signal, this.deadlineMs);
    } catch (e) {
      this.abandon(e instanceof Error ? e.message : String(e));
      if (e instanceof AbortError || e instanceof PoolError) throw e;
      throw new PoolError(`a shard worker failed (${e instanceof Error ? e.message : String(e)}); the pool restarts for the next request`);
    } finally {
      this.busy = false;
    }
  }

  /** Rejects as soon as a worker fails, the deadline passes, or an abort outlives its grace. */
  private async guard<T>(p: Promise<T>, signal: AbortSignal | null | undefined, deadlineMs: number): Promise<T> {
    let timer: ReturnType<typeof setInterval> | undefined;
    const started = performance.now();
    let abortedAt = -1;
    const watch = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        const now = performance.now();
        if (signal?.aborted && abortedAt < 0) abortedAt = now;
        if (this.failure !== null) reject(new PoolError(this.failure));
        else if (abortedAt >= 0 && now - abortedAt > this.abortGraceMs) reject(new AbortError());
        else if (now - started > deadlineMs) reject(new PoolError(`the shard workers did not answer within ${deadlineMs} ms`));
      }, WATCH_MS);
    });
    try {
      return await Promise.race([p, watch]);
    } finally {
      clearInterval(timer);
    }
  }

  private async stopWorkers(): Promise<void> {
    if (this.sync === 'atomics' && this.members.length > 0) publish(this.control, CMD_STOP, 0, 0, 0);
    const members = this.members;
    this.members = [];
    await Promise.all(members.map(async (m) => {
      m.remote[Comlink.releaseProxy]();
      await m.spawned.terminate();
    }));
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.restarting?.catch(() => {});
    await this.stopWorkers();
  }
}
