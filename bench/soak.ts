// npm run soak [-- --model DIR] [-- --workers 2,3,5,8] [-- --requests 100] [-- --busy 2] [-- --json]
// The worker pool against the single-thread reference under CPU contention: more shard workers
// than cores, plus busy threads, for hundreds of requests; every logit row of every request is
// compared with the reference's. A race in the hand-off shows as a wrong row, never as a crash.

import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { parseArgs, UsageError } from '../src/cli/args.ts';
import type { Decoder } from '../src/engine/decoder.ts';
import { Prng } from '../src/engine/prng.ts';
import { createReferenceDecoder } from '../src/engine/reference.ts';
import { planShards } from '../src/engine/shard-plan.ts';
import { loadWeights } from '../src/engine/weights.ts';
import { openModelDir } from '../src/node/model-dir.ts';
import { openDecoder } from '../src/node/open-decoder.ts';

/** A row is wrong when it differs from the reference by more than this share of its largest logit. */
export const TOLERANCE = 1e-5;

export interface SoakResult {
  workers: number;
  requests: number;
  rows: number;
  wrongRows: number;
  /** The largest |pool − reference| / max|reference| seen. */
  worstError: number;
}

/** One request: a prompt from position 0, then single-token steps. */
interface Request {
  prompt: number[];
  steps: number[];
}

function requests(n: number, vocab: number, seed: number): Request[] {
  const rng = new Prng(seed);
  const id = (): number => Math.floor(rng.next() * vocab);
  return Array.from({ length: n }, () => ({
    prompt: Array.from({ length: 1 + Math.floor(rng.next() * 24) }, id),
    steps: Array.from({ length: 3 }, id),
  }));
}

function relativeError(got: Float32Array, want: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let v = 0; v < want.length; v++) {
    diff = Math.max(diff, Math.abs(got[v] - want[v]));
    scale = Math.max(scale, Math.abs(want[v]));
  }
  return diff / scale;
}

async function rows(decoder: Decoder, r: Request): Promise<Float32Array[]> {
  decoder.rollback(0);
  const out = [(await decoder.step(r.prompt)).slice()];
  for (const id of r.steps) out.push((await decoder.step([id])).slice());
  return out;
}

/** Runs `count` seeded requests on a pool of `workers` and on the reference, row by row. */
export async function soak(dir: string, workers: number, count: number, seed = 1): Promise<SoakResult> {
  const m = await openModelDir(dir);
  const weights = await loadWeights(m.config, m.source, planShards(m.config, 1)).finally(() => m.close());
  const reference = createReferenceDecoder(weights);
  const pool = await openDecoder(dir, workers);
  const result: SoakResult = { workers, requests: 0, rows: 0, wrongRows: 0, worstError: 0 };
  try {
    for (const r of requests(count, m.config.vocabSize, seed + workers)) {
      const want = await rows(reference, r);
      const got = await rows(pool, r);
      for (let i = 0; i < want.length; i++) {
        const e = relativeError(got[i], want[i]);
        result.worstError = Math.max(result.worstError, e);
        if (!(e <= TOLERANCE)) result.wrongRows++;
        result.rows++;
      }
      result.requests++;
    }
  } finally {
    await pool.dispose();
  }
  return result;
}

/** Threads that keep `n` cores busy until stopped. */
export function busyLoops(n: number): { stop(): Promise<void> } {
  const loops = Array.from({ length: n }, () => new Worker('for (;;);', { eval: true }));
  return { stop: async () => void (await Promise.all(loops.map((w) => w.terminate()))) };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), new Set(['json']), new Set(['model', 'workers', 'requests', 'busy', 'seed']));
  const dir = String(args.get('model') ?? 'test/models/tiny');
  const sizes = String(args.get('workers') ?? '2,3,5,8').split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new UsageError('--workers must be positive integers, e.g. 2,5,8');
  const count = Number(args.get('requests') ?? 130);
  const busy = Number(args.get('busy') ?? availableParallelism());
  const seed = Number(args.get('seed') ?? 1);
  const load = busyLoops(busy);
  const results: SoakResult[] = [];
  const started = performance.now();
  try {
    for (const n of sizes) {
      const r = await soak(dir, n, count, seed);
      results.push(r);
      if (!args.has('json')) console.log(`${n} workers: ${r.requests} requests, ${r.rows} logit rows, ${r.wrongRows} wrong (worst error ${r.worstError.toExponential(1)})`);
    }
  } finally {
    await load.stop();
  }
  const total = results.reduce((a, r) => ({ requests: a.requests + r.requests, rows: a.rows + r.rows, wrong: a.wrong + r.wrongRows }), { requests: 0, rows: 0, wrong: 0 });
  const seconds = (performance.now() - started) / 1000;
  if (args.has('json')) console.log(JSON.stringify({ cores: availableParallelism(), busyThreads: busy, seconds, results }));
  else console.log(`total: ${total.requests} requests, ${total.rows} rows, ${total.wrong} wrong, beside ${busy} busy threads on ${availableParallelism()} cores, ${seconds.toFixed(0)} s`);
  if (total.wrong > 0) process.exitCode = 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exitCode = 2;
  });
}
