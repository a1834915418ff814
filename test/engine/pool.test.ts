import { afterAll, describe, expect, it } from 'vitest';
import type { Coordinator } from '../../src/engine/coordinator.ts';
import type { GeneratedToken, GenerationSummary } from '../../src/engine/generate.ts';
import { generate, Session } from '../../src/engine/generate.ts';
import { createPoolDecoder } from '../../src/engine/pool-decoder.ts';
import { GREEDY } from '../../src/engine/sampler.ts';
import { createReferenceDecoder } from '../../src/engine/reference.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import { encode } from '../../src/engine/tokenizer.ts';
import { expectedTensors } from '../../src/engine/weights.ts';
import { DONE, SEQ } from '../../src/engine/pool-protocol.ts';
import type { PoolOptions } from '../../src/engine/worker-pool.ts';
import { PoolError } from '../../src/engine/worker-pool.ts';
import { busyLoops, soak } from '../../bench/soak.ts';
import type { Fault } from '../helpers/faulty-shard.worker.ts';
import { faultySpawner, killableSpawner, tinyPool } from '../helpers/pools.ts';
import { openModelDir } from '../../src/node/model-dir.ts';
import { spawnNodeShard } from '../../src/node/spawn-node.ts';
import { loadModel, referenceDecoder, TINY } from '../helpers/fixtures.ts';

const PROMPT = encode('It was the best of times, it was the worst of times, it was the age of wisdom');
const STEPS = 20;

async function pool(workers: number, sync: 'atomics' | 'comlink' = 'atomics'): Promise<Coordinator> {
  const m = await openModelDir(TINY);
  try {
    return await createPoolDecoder(m.config, m.source, { workers, sync, spawn: spawnNodeShard });
  } finally {
    await m.close();
  }
}

/** The logits of the prefill and of STEPS greedy decode steps, copied. */
async function trace(decoder: { step(ids: number[]): Promise<Float32Array>; rollback(p: number): void }): Promise<Float32Array[]> {
  decoder.rollback(0);
  const out: Float32Array[] = [];
  let logits = await decoder.step(PROMPT);
  for (let i = 0; i < STEPS; i++) {
    out.push(logits.slice());
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    logits = await decoder.step([best]);
  }
  out.push(logits.slice());
  return out;
}

function maxError(got: Float32Array[], want: Float32Array[]): number {
  let worst = 0;
  got.forEach((g, i) => {
    let diff = 0;
    let scale = 0;
    for (let v = 0; v < g.length; v++) {
      diff = Math.max(diff, Math.abs(g[v] - want[i][v]));
      scale = Math.max(scale, Math.abs(want[i][v]));
    }
    worst = Math.max(worst, diff / scale);
  });
  return worst;
}

async function reply(session: Session, prompt: number[], maxTokens = 12, signal?: AbortSignal): Promise<{ ids: number[]; summary: GenerationSummary }> {
  const ids: number[] = [];
  const it = generate(session, prompt, { maxTokens, sampler: GREEDY, eosTokenId: null, signal });
  let r = await it.next();
  while (!r.done) {
    ids.push((r.value as GeneratedToken).id);
    r = await it.next();
  }
  return { ids, summary: r.value };
}

describe('shard plan', () => {
  const cfg = (nHead: number, nEmbd: number) => ({ nLayer: 1, nHead, nEmbd, nPositions: 8, vocabSize: 50257, layerNormEpsilon: 1e-5, eosTokenId: 0 });
  const sizes = (r: [number, number][]) => r.map(([a, b]) => b - a);

  it('splits unevenly but completely: 12 heads over 5, 25 heads over 2', () => {
    expect(sizes(planShards(cfg(12, 768), 5).map((s) => s.heads))).toEqual([3, 3, 2, 2, 2]);
    expect(sizes(planShards(cfg(25, 1600), 2).map((s) => s.heads))).toEqual([13, 12]);
    for (const [h, d, n] of [[12, 768, 5], [25, 1600, 2], [4, 64, 7]]) {
      const plan = planShards(cfg(h, d), n);
      for (const key of ['heads', 'mlp', 'vocab'] as const) {
        expect(plan[0][key][0]).toBe(0);
        for (let s = 1; s < n; s++) expect(plan[s][key][0]).toBe(plan[s - 1][key][1]);
      }
      expect(plan[n - 1].heads[1]).toBe(h);
      expect(plan[n - 1].mlp[1]).toBe(4 * d);
      expect(plan[n - 1].vocab[1]).toBe(50257);
    }
  });

  it('holds every weight exactly once, whatever the number of shards', async () => {
    const m = await openModelDir(TINY);
    await m.close();
    const params = [...expectedTensors(m.config).values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
    for (const n of [1, 3, 5]) {
      const w = await loadModel(TINY, n);
      expect(w.common.length + w.shards.reduce((a, s) => a + s.length, 0)).toBe(params);
    }
  });

  it('five in-process shards (one without heads) compute the reference logits', async () => {
    const five = createReferenceDecoder(await loadModel(TINY, 5), 5);
    expect(maxError(await trace(five), await trace(await referenceDecoder()))).toBeLessThan(1e-5);
  });
});

describe('worker pool', async () => {
  const reference = await trace(await referenceDecoder());
  const referenceReply = await reply(new Session(await referenceDecoder()), PROMPT);
  const open: Coordinator[] = [];
  afterAll(async () => {
    await Promise.all(open.map((d) => d.dispose()));
  });

  for (const n of [1, 2, 3, 4]) {
    it(`${n} worker${n > 1 ? 's' : ''}: prefill and ${STEPS} decode steps equal the reference; greedy reply identical`, async () => {
      const d = await pool(n);
      open.push(d);
      expect(d.mode).toMatchObject({ kind: 'pool', workers: n, sync: 'atomics', sharedMemory: true });
      expect(maxError(await trace(d), reference)).toBeLessThan(1e-5);
      expect((await reply(new Session(d), PROMPT)).ids).toEqual(referenceReply.ids);
    });
  }

  it('the comlink sync mode computes the same logits', async () => {
    const d = await pool(2, 'comlink');
    open.push(d);
    expect(d.mode.sync).toBe('comlink');
    expect(maxError(await trace(d), reference)).toBeLessThan(1e-5);
  });

  it('abort in the middle frees the pool for the next request', async () => {
    const d = await pool(2);
    open.push(d);
    const session = new Session(d);
    const controller = new AbortController();
    const ids: number[] = [];
    const it = generate(session, PROMPT, { maxTokens: 50, sampler: GREEDY, eosTokenId: null, signal: controller.signal });
    for await (const t of it) {
      ids.push(t.id);
      if (ids.length === 4) controller.abort();
    }
    expect(ids).toEqual(referenceReply.ids.slice(0, 4));
    expect((await reply(session, PROMPT)).ids).toEqual(referenceReply.ids);
  });

  it('rolling the KV cache back and decoding again equals a fresh prefill', async () => {
    const d = await pool(3);
    open.push(d);
    await d.step(PROMPT);
    for (const id of [5, 6, 7, 8]) await d.step([id]);
    d.rollback(PROMPT.length - 2);
    const again = (await d.step(PROMPT.slice(-2))).slice();
    expect(maxError([again], [reference[0]])).toBeLessThan(1e-5);
  });

});

describe('worker pool: each command runs once on every shard', () => {
  it('a notify that arrives after a shard ran the command (a preempted coordinator) runs nothing again', async () => {
    const { pool, decoder } = await tinyPool(1);
    try {
      await decoder.step(PROMPT);
      const c = pool.control;
      const before = Atomics.load(c, DONE);
      // Atomics.notify returns 1 only while the shard sleeps in its serve loop, so each round
      // below waits until the shard has handled the previous wake-up: no sleep, no timing.
      for (let k = 0; k < 4; k++) while (Atomics.notify(c, SEQ) !== 1);
      expect(Atomics.load(c, DONE)).toBe(before); // before the fix: before + 3 (one rerun per late notify)
      expect(maxError(await trace(decoder), await trace(await referenceDecoder()))).toBeLessThan(1e-5);
    } finally {
      await decoder.dispose();
    }
  });

  it('more workers than cores beside busy threads: every logit row of 40 requests equals the reference', async () => {
    const load = busyLoops(2);
    try {
      for (const n of [5, 8]) {
        const r = await soak(TINY, n, 20);
        expect(r).toMatchObject({ requests: 20, rows: 80, wrongRows: 0 });
      }
    } finally {
      await load.stop();
    }
  });
});

describe('worker pool faults', async () => {
  const referenceReply = await reply(new Session(await referenceDecoder()), PROMPT);
  const open: Coordinator[] = [];
  afterAll(async () => {
    await Promise.all(open.map((d) => d.dispose()));
  });
  const faulty = async (workers: number, fault: Omit<Fault, 'armed'>, options: Partial<PoolOptions> = {}): Promise<Coordinator> => {
    const { decoder } = await tinyPool(workers, faultySpawner(fault), options);
    open.push(decoder);
    return decoder;
  };

  it('a worker that throws ends the request with a clear error; the pool restarts and the next request works', async () => {
    // Five commands per token on the 2-layer model: the fault strikes in the middle of the fourth token.
    const d = await faulty(2, { shard: 1, after: 17, kind: 'throw' });
    const session = new Session(d);
    const err = await reply(session, PROMPT, 8).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PoolError);
    expect((err as Error).message).toMatch(/shard 1: fault injected into shard 1/);
    expect(d.position).toBe(0);
    expect((await reply(session, PROMPT)).ids).toEqual(referenceReply.ids);
  });

  it('a worker that exits in the middle of a reply is survived', async () => {
    const d = await faulty(3, { shard: 2, after: 12, kind: 'exit' });
    const session = new Session(d);
    await expect(reply(session, PROMPT, 40)).rejects.toThrow(/shard 2: worker exited with code 3/);
    expect((await reply(session, PROMPT)).ids).toEqual(referenceReply.ids);
  });

  it('a stuck shard: abort ends the reply after the grace period, and the next request works', async () => {
    const d = await faulty(2, { shard: 0, after: 12, kind: 'hang' }, { abortGraceMs: 200 });
    const session = new Session(d);
    const controller = new AbortController();
    const it = generate(session, PROMPT, { maxTokens: 40, sampler: GREEDY, eosTokenId: null, signal: controller.signal });
    const ids: number[] = [];
    const ended = (async () => {
      let r = await it.next();
      while (!r.done) {
        ids.push(r.value.id);
        r = await it.next();
      }
      return r.value;
    })();
    // The shard hangs on its 13th command (the third token): once it has, the reply cannot go on.
    while (ids.length < 2) await new Promise((r) => setImmediate(r));
    controller.abort();
    expect((await ended).stopReason).toBe('aborted');
    expect(ids).toEqual(referenceReply.ids.slice(0, 2));
    expect((await reply(session, PROMPT)).ids).toEqual(referenceReply.ids);
  });

  it('a stuck shard with nobody aborting: the deadline names it, and the next request works', async () => {
    const d = await faulty(3, { shard: 1, after: 7, kind: 'hang' }, { deadlineMs: 300 });
    const session = new Session(d);
    await expect(reply(session, PROMPT, 10)).rejects.toThrow(/shard 1 did not answer within 300 ms/);
    expect((await reply(session, PROMPT)).ids).toEqual(referenceReply.ids);
  });

  it('a worker killed between requests is replaced before the next request sees it', async () => {
    const { spawn, threads } = killableSpawner();
    const { pool, decoder } = await tinyPool(3, spawn);
    open.push(decoder);
    const session = new Session(decoder);
    expect((await reply(session, PROMPT)).ids).toEqual(referenceReply.ids);
    const generation = pool.generation;
    await threads[1].terminate(); // as the browser or the OS would kill it
    expect(decoder.position).toBe(0); // its KV cache is gone, and the coordinator knows it
    const next = await reply(session, PROMPT);
    expect(next.ids).toEqual(referenceReply.ids);
    expect(next.summary.reusedTokens).toBe(0);
    expect(pool.generation).toBeGreaterThan(generation);
    expect(threads).toHaveLength(6);
  });
});
