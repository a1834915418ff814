import * as Comlink from 'comlink';
import type { GPT2Config } from './config.ts';
import type { ShardGroup } from './coordinator.ts';
import type { DecoderMode } from './decoder.ts';
import {
  CMD, CMD_ATTENTION, CMD_LOGITS, CMD_MLP, CMD_STOP, CONTROL_WORDS, DONE, FAILED, FAULT, LAYER, POS, READY, ROWS, SEQ,
} from './pool-protocol.ts';
import type { ShardWorkerApi, SpawnedWorker, SpawnShard } from './pool-protocol.ts';
import { MAX_ROWS } from './shard.ts';
import type { ShardSlice } from './shard-plan.ts';
import type { LoadedWeights } from './weights.ts';

export type SyncMode = 'atomics' | 'comlink';

export class PoolError extends Error {
  override readonly name = 'PoolError';
}

interface Member {
  spawned: SpawnedWorker;
  remote: Comlink.Remote<ShardWorkerApi>;
  serving: Promise<void> | null;
}

/** While blocked on the shards, look up every this many ms for a worker that died. */
const WATCH_MS = 50;

const shared = (floats: number): Float32Array => new Float32Array(new SharedArrayBuffer(floats * 4));
const macrotask = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

/**
 * N shard workers driven in lock step: a ShardGroup whose every call runs one layer step on all
 * shards in parallel. If a worker throws or dies, the call fails with a PoolError, the pool
 * marks itself broken, and the next call restarts every worker over the same shared weights.
 */
export class WorkerPool implements ShardGroup {
  readonly input: Float32Array;
  readonly partials: Float32Array[];
  readonly logits: Float32Array;
  readonly mode: DecoderMode;
  readonly control: Int32Array;
  private members: Member[] = [];
  private failure: string | null = null;
  private broken = false;
  private disposed = false;
  /** Bytes of KV cache held by the workers. */
  cacheBytes = 0;

  private constructor(
    private readonly config: GPT2Config,
    private readonly plan: ShardSlice[],
    private readonly weights: LoadedWeights,
    private readonly spawn: SpawnShard,
    readonly sync: SyncMode,
  ) {
    const d = config.nEmbd;
    this.input = shared(MAX_ROWS * d);
    this.partials = plan.map(() => shared(MAX_ROWS * d));
    this.logits = shared(config.vocabSize);
    this.control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
    this.mode = { kind: 'pool', workers: plan.length, sync, sharedMemory: true };
  }

  /** `weights` must be loaded into SharedArrayBuffers with `plan`. */
  static async start(config: GPT2Config, plan: ShardSlice[], weights: LoadedWeights, spawn: SpawnShard, sync: SyncMode): Promise<WorkerPool> {
    if (!(weights.common.buffer instanceof SharedArrayBuffer)) throw new PoolError('the worker pool needs weights in SharedArrayBuffers');
    const pool = new WorkerPool(config, plan, weights, spawn, sync);
    await pool.startWorkers();
    return pool;
  }

  get size(): number {
    return this.plan.length;
  }

  private async startWorkers(): Promise<void> {
    this.failure = null;
    Atomics.store(this.control, SEQ, 0);
    Atomics.store(this.control, READY, 0);
    Atomics.store(this.control, FAULT, 0);
    this.members = this.plan.map((slice) => {
      const spawned = this.spawn();
      spawned.onFailure((reason) => this.fail(`shard ${slice.index}: ${reason}`));
      return { spawned, remote: Comlink.wrap<ShardWorkerApi>(spawned.endpoint), serving: null };
    });
    try {
      const bytes = await this.guard(Promise.all(this.members.map((m, s) => m.remote.init({
        config: this.config, slice: this.plan[s], common: this.weights.common, weights: this.weights.shards[s],
        input: this.input, partial: this.partials[s], logits: this.logits, control: this.control,
      }))));
      this.cacheBytes = bytes.reduce((a, b) => a + b, 0);
    } catch (e) {
      await this.stopWorkers();
      throw e;
    }
    if (this.sync === 'atomics') {
      this.members.forEach((m, s) => {
        m.serving = m.remote.serve().catch((e: unknown) => this.fail(`shard ${s}: ${(e as Error).message ?? String(e)}`));
      });
      while (Atomics.load(this.control, READY) < this.members.length) {
        if (this.failure !== null) {
          await this.stopWorkers();
          throw new PoolError(`a shard worker failed to start (${this.failure})`);
        }
        await new Promise((r) => setTimeout(r, 1));
      }
    }
    this.broken = false;
  }

  private fail(reason: string): void {
    if (this.disposed || this.failure !== null) return;
    this.failure = reason;
  }

  /** Rejects as soon as a worker fails, whatever `p` is waiting for. */
  private async guard<T>(p: Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setInterval> | undefined;
    const watch = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        if (this.failure !== null) reject(new PoolError(this.failure));
      }, WATCH_MS);
    });
    try {
      return await Promise.race([p, watch]);
    } finally {
      clearInterval(timer);
    }
  }

  attention(T: number, pos: number, layer: number): void | Promise<void> {
    return this.sync === 'atomics' ? this.command(CMD_ATTENTION, T, pos, layer) : this.viaComlink((r) => r.attention(T, pos, layer));
  }

  mlp(T: number, layer: number): void | Promise<void> {
    return this.sync === 'atomics' ? this.command(CMD_MLP, T, 0, layer) : this.viaComlink((r) => r.mlp(T, layer));
  }

  logitsOfFirstRow(): void | Promise<void> {
    return this.sync === 'atomics' ? this.command(CMD_LOGITS, 1, 0, 0) : this.viaComlink((r) => r.logits());
  }

  /** Makes shard `index` throw at its next command, as a bug in a kernel would (fault-tolerance tests). */
  injectFault(index: number): void {
    Atomics.store(this.control, FAULT, index + 1);
  }

  /** Kills worker `index` as a crash would (fault-tolerance tests). */
  async killWorker(index: number): Promise<void> {
    const m = this.members[index];
    m.spawned.onFailure(() => {});
    this.fail(`shard ${index}: worker was killed`);
    await m.spawned.terminate();
  }

  private command(cmd: number, T: number, pos: number, layer: number): void | Promise<void> {
    if (this.broken || this.failure !== null || this.disposed) return this.recoverThen(() => this.command(cmd, T, pos, layer));
    const c = this.control;
    Atomics.store(c, DONE, 0);
    Atomics.store(c, FAILED, 0);
    Atomics.store(c, CMD, cmd);
    Atomics.store(c, ROWS, T);
    Atomics.store(c, POS, pos);
    Atomics.store(c, LAYER, layer);
    Atomics.add(c, SEQ, 1);
    Atomics.notify(c, SEQ);
    const n = this.members.length;
    for (;;) {
      const done = Atomics.load(c, DONE);
      if (done >= n) break;
      // Block, but not forever: a worker that died never answers, and only the event loop tells us.
      if (Atomics.wait(c, DONE, done, WATCH_MS) === 'timed-out') return this.awaitDone(n);
    }
    if (Atomics.load(c, FAILED) > 0) return this.failed();
  }

  /** The slow path: the shards took longer than WATCH_MS, so let the event loop deliver failures. */
  private async awaitDone(n: number): Promise<void> {
    const c = this.control;
    for (;;) {
      await macrotask();
      if (this.failure !== null) return this.failed();
      const done = Atomics.load(c, DONE);
      if (done >= n) break;
      Atomics.wait(c, DONE, done, WATCH_MS);
    }
    if (Atomics.load(c, FAILED) > 0) return this.failed();
  }

  /** A shard threw or died: wait for its reason to arrive, then fail this request. */
  private async failed(): Promise<never> {
    for (let i = 0; i < 20 && this.failure === null; i++) await new Promise((r) => setTimeout(r, 10));
    this.broken = true;
    throw new PoolError(`a shard worker failed (${this.failure ?? 'unknown reason'}); the pool will restart for the next request`);
  }

  private async viaComlink(call: (r: Comlink.Remote<ShardWorkerApi>) => Promise<void>): Promise<void> {
    if (this.broken || this.failure !== null || this.disposed) return this.recoverThen(() => this.viaComlink(call));
    try {
      await this.guard(Promise.all(this.members.map((m) => call(m.remote))));
    } catch (e) {
      this.broken = true;
      throw e instanceof PoolError ? e : new PoolError(`a shard worker failed (${(e as Error).message}); the pool will restart for the next request`);
    }
  }

  /** After a failure: the request that saw it has ended; this one restarts the workers first. */
  private async recoverThen(retry: () => void | Promise<void>): Promise<void> {
    if (this.disposed) throw new PoolError('the worker pool was shut down');
    if (!this.broken) {
      // A failure arrived between two commands: end this request, restart on the next.
      this.broken = true;
      return this.failed();
    }
    await this.stopWorkers();
    await this.startWorkers();
    await retry();
  }

  private async stopWorkers(): Promise<void> {
    if (this.sync === 'atomics' && this.members.length > 0) {
      Atomics.store(this.control, CMD, CMD_STOP);
      Atomics.add(this.control, SEQ, 1);
      Atomics.notify(this.control, SEQ);
    }
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
    await this.stopWorkers();
  }
}
