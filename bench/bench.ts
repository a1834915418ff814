// npm run bench [-- --json] [-- --model DIR] [-- --workers 1,2] [-- --runs 3] [-- --peer off]
// Prefill of a 128-token prompt and decode tokens/s over 64 tokens, for the single-thread
// reference and the worker pool, measured side by side in one run; each pool figure is printed
// as a ratio to the reference of the same run. Also: the memory-bandwidth bound of decoding, and
// the peer (bench/peer-ort.ts): onnxruntime-web on the same weights, our figures as ratios to it.

import { availableParallelism, cpus } from 'node:os';
import { Worker } from 'node:worker_threads';
import { parseArgs, UsageError } from '../src/cli/args.ts';
import type { GPT2Config } from '../src/engine/config.ts';
import type { Decoder } from '../src/engine/decoder.ts';
import { Session } from '../src/engine/generate.ts';
import { argmax } from '../src/engine/sampler.ts';
import { encode } from '../src/engine/tokenizer.ts';
import { planShards } from '../src/engine/shard-plan.ts';
import { allocateShared, expectedTensors, loadWeights } from '../src/engine/weights.ts';
import type { SyncMode } from '../src/engine/worker-pool.ts';
import { WorkerPool } from '../src/engine/worker-pool.ts';
import { openModelDir } from '../src/node/model-dir.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
// idb recognises requests by instanceof: fake-indexeddb's classes must be the global ones.
import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { createPoolDecoder } from '../src/engine/pool-decoder.ts';
import { openDecoder } from '../src/node/open-decoder.ts';
import { spawnNodeShard } from '../src/node/spawn-node.ts';
import { ModelStore } from '../src/store/index.ts';
import { benchPeer, peerText, ratiosToPeer } from './peer-ort.ts';
import type { PeerReport } from './peer-ort.ts';
import { GPT2_SMALL, randomModelDir } from './random-model.ts';

const PROMPT_TOKENS = 128;
const DECODE_TOKENS = 64;

interface Row {
  model: string;
  engine: string;
  workers: number;
  sync: SyncMode | 'none';
  loadMs: number;
  prefillMs: number;
  decodeTokensPerSecond: number;
  prefillSpeedup: number;
  decodeSpeedup: number;
  boundTokensPerSecond: number;
  ofBound: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function prompt(config: GPT2Config): number[] {
  const text = 'It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. ';
  let ids: number[] = [];
  while (ids.length < PROMPT_TOKENS) ids = ids.concat(encode(text));
  return ids.slice(0, Math.min(PROMPT_TOKENS, config.nPositions - DECODE_TOKENS - 1));
}

/** Bytes of float32 weights a decode step reads: every matrix once, plus one row of wpe. */
function bytesPerToken(c: GPT2Config): number {
  let floats = 0;
  for (const [name, shape] of expectedTensors(c)) floats += name === 'wpe.weight' ? c.nEmbd : shape.reduce((a, b) => a * b, 1);
  return floats * 4;
}

/** Read bandwidth of `threads` threads scanning disjoint slices of a 512 MiB SharedArrayBuffer. */
async function readBandwidth(threads: number): Promise<number> {
  const bytes = 512 * 1024 * 1024;
  const buffer = new SharedArrayBuffer(bytes);
  new Uint8Array(buffer).fill(2); // touch every page, and never the byte being searched for
  const repeats = 4;
  const workers = Array.from({ length: threads }, (_, t) => new Worker(new URL('./bandwidth.worker.mjs', import.meta.url), {
    workerData: { buffer, begin: Math.floor((t * bytes) / threads), end: Math.floor(((t + 1) * bytes) / threads), repeats },
  }));
  await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  const t0 = performance.now();
  workers.forEach((w) => w.postMessage('go'));
  await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(workers.map((w) => w.terminate()));
  return (bytes * repeats) / seconds;
}

async function measure(decoder: Decoder, ids: number[], runs: number): Promise<{ prefillMs: number; tps: number }> {
  const prefill: number[] = [];
  const tps: number[] = [];
  const one = [0];
  // Untimed warm-up runs let the JIT reach its optimizing tier first (it takes a few on small models).
  const WARMUP = 2;
  for (let r = 0; r < runs + WARMUP; r++) {
    decoder.rollback(0);
    const t0 = performance.now();
    let logits = await decoder.step(ids);
    const t1 = performance.now();
    for (let i = 0; i < DECODE_TOKENS; i++) {
      one[0] = argmax(logits, decoder.config.vocabSize);
      logits = await decoder.step(one);
    }
    const t2 = performance.now();
    if (r < WARMUP) continue;
    prefill.push(t1 - t0);
    tps.push((DECODE_TOKENS * 1000) / (t2 - t1));
  }
  return { prefillMs: median(prefill), tps: median(tps) };
}

interface Engine {
  workers: number;
  sync: SyncMode | 'none';
}

async function benchModel(name: string, dir: string, engines: Engine[], runs: number, bandwidth: Map<number, number>, log: (s: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  let reference: { prefillMs: number; tps: number } | null = null;
  for (const e of engines) {
    const t0 = performance.now();
    const decoder = await openDecoder(dir, e.workers, e.sync === 'none' ? 'atomics' : e.sync);
    const loadMs = performance.now() - t0;
    try {
      const m = await measure(decoder, prompt(decoder.config), runs);
      reference ??= m;
      const bound = (bandwidth.get(Math.max(1, e.workers)) ?? 0) / bytesPerToken(decoder.config);
      const row: Row = {
        model: name, engine: e.workers === 0 ? 'reference' : `pool`, workers: e.workers, sync: e.sync, loadMs,
        prefillMs: m.prefillMs, decodeTokensPerSecond: m.tps,
        prefillSpeedup: reference.prefillMs / m.prefillMs, decodeSpeedup: m.tps / reference.tps,
        boundTokensPerSecond: bound, ofBound: m.tps / bound,
      };
      rows.push(row);
      log(`  ${name}: ${describe(e)} done`);
    } finally {
      await decoder.dispose();
    }
  }
  return rows;
}

/**
 * Cold start of a stored model: from the model store (IndexedDB, here fake-indexeddb in Node) into
 * the pool's SharedArrayBuffers, chunk by chunk, until the first token's logits; next to the same
 * from a file on disk.
 */
async function coldStart(dir: string, workers: number, runs: number): Promise<{ storeMs: number; diskMs: number }> {
  const store = await ModelStore.open({ indexedDB: new IDBFactory(), dbName: 'bench', storage: null, appBaseUrl: null });
  const model = await store.importFiles(
    new Blob([await readFile(join(dir, 'config.json'))]), new Blob([await readFile(join(dir, 'model.safetensors'))]), 'bench',
  );
  const first = async (open: () => Promise<Decoder>): Promise<number> => {
    const t0 = performance.now();
    const d = await open();
    await d.step([0]);
    const ms = performance.now() - t0;
    await d.dispose();
    return ms;
  };
  const storeMs: number[] = [];
  const diskMs: number[] = [];
  for (let r = 0; r < runs; r++) {
    storeMs.push(await first(async () => {
      const m = await store.openStoredModel(model.id);
      return createPoolDecoder(m.config, m.source, { workers, spawn: spawnNodeShard });
    }));
    diskMs.push(await first(() => openDecoder(dir, workers)));
  }
  store.close();
  return { storeMs: median(storeMs), diskMs: median(diskMs) };
}

/**
 * A conversation's next turn: the history is already in the KV cache, so only the new message runs,
 * next to re-running the whole prompt as an engine without prefix reuse would.
 */
async function prefixReuse(dir: string, workers: number, runs: number): Promise<{ historyTokens: number; newTokens: number; reusedMs: number; freshMs: number }> {
  const decoder = await openDecoder(dir, workers);
  try {
    const window = decoder.config.nPositions;
    let history: number[] = [];
    while (history.length < Math.floor(window * 0.75)) history = history.concat(encode('ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n'));
    history = history.slice(0, Math.floor(window * 0.75));
    const turn = encode('ROMEO:\nShall I hear more, or shall I speak at this?\n\nJULIET:\n');
    const reused: number[] = [];
    const fresh: number[] = [];
    for (let r = 0; r <= runs; r++) {
      const session = new Session(decoder);
      session.reset();
      let t0 = performance.now();
      await session.prefill([...history, ...turn]);
      const f = performance.now() - t0;
      session.reset();
      await session.prefill(history);
      t0 = performance.now();
      await session.prefill([...history, ...turn]);
      const u = performance.now() - t0;
      if (r === 0) continue;
      fresh.push(f);
      reused.push(u);
    }
    return { historyTokens: history.length, newTokens: turn.length, reusedMs: median(reused), freshMs: median(fresh) };
  } finally {
    await decoder.dispose();
  }
}

/**
 * What one layer step's hand-off costs with no work in it (zero rows): the coordinator signals
 * every shard and waits for all of them, by Atomics or by one Comlink message each.
 */
async function handOff(dir: string, workers: number, sync: SyncMode): Promise<number> {
  const m = await openModelDir(dir);
  const plan = planShards(m.config, workers);
  const weights = await loadWeights(m.config, m.source, plan, allocateShared).finally(() => m.close());
  const pool = await WorkerPool.start(m.config, plan, weights, spawnNodeShard, { sync });
  try {
    const round = async (n: number): Promise<number> => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await pool.mlp(0, 0);
      return ((performance.now() - t0) * 1000) / n;
    };
    await round(500);
    return median([await round(2000), await round(2000), await round(2000)]);
  } finally {
    await pool.dispose();
  }
}

const describe = (e: Engine): string => (e.workers === 0 ? 'single-thread reference' : `pool, ${e.workers} worker${e.workers > 1 ? 's' : ''} (${e.sync})`);

function table(rows: Row[]): string {
  const head = '| model | engine | load ms | prefill 128 tok, ms | × ref | decode tok/s | × ref | bandwidth bound tok/s | % of bound |';
  const sep = '|---|---|---:|---:|---:|---:|---:|---:|---:|';
  const lines = rows.map((r) => `| ${r.model} | ${describe(r)} | ${r.loadMs.toFixed(0)} | ${r.prefillMs.toFixed(1)} | ${r.prefillSpeedup.toFixed(2)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${r.decodeSpeedup.toFixed(2)} | ${r.boundTokensPerSecond.toFixed(1)} | ${(100 * r.ofBound).toFixed(0)}% |`);
  return [head, sep, ...lines].join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), new Set(['json', 'comlink']), new Set(['model', 'workers', 'runs', 'peer']));
  const runs = Number(args.get('runs') ?? 3);
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError('--runs must be a positive integer');
  const poolSizes = String(args.get('workers') ?? '1,2').split(',').map(Number);
  if (poolSizes.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) throw new UsageError('--workers must be a comma-separated list of pool sizes, e.g. 1,2');
  const peerOn = String(args.get('peer') ?? 'on');
  if (peerOn !== 'on' && peerOn !== 'off') throw new UsageError('--peer must be on or off');
  const json = args.has('json');
  const log = (s: string): void => void process.stderr.write(s + '\n');

  const engines: Engine[] = [{ workers: 0, sync: 'none' }, ...poolSizes.map((n) => ({ workers: n, sync: 'atomics' as const }))];
  // The cost of a Comlink message per layer step, next to the Atomics hand-off it replaced.
  engines.push({ workers: Math.max(...poolSizes), sync: 'comlink' });

  const models: Array<[string, string]> = [];
  const custom = args.get('model');
  if (typeof custom === 'string') models.push([custom, custom]);
  else {
    models.push(['tiny (test model)', new URL('../test/models/tiny', import.meta.url).pathname]);
    log('preparing the GPT-2-small-shaped random model (written once to the temp dir)…');
    models.push(['gpt2-small shape', randomModelDir('small', GPT2_SMALL)]);
  }

  log('measuring read bandwidth…');
  const bandwidth = new Map<number, number>();
  for (const n of new Set([1, ...poolSizes])) bandwidth.set(n, await readBandwidth(n));

  const rows: Row[] = [];
  for (const [name, dir] of models) rows.push(...(await benchModel(name, dir, engines, runs, bandwidth, log)));

  // The peer runs on the last model (GPT-2-small-shaped, or the one named), after our rows.
  const [peerModel, peerDir] = models[models.length - 1];
  const peer: PeerReport = peerOn === 'off' ? { skipped: '--peer off' } : await benchPeer({ dir: peerDir, prompt, decodeTokens: DECODE_TOKENS, runs, log });
  const ours = rows.filter((r) => r.model === peerModel).map((r) => ({ ...r, name: describe(r) }));

  // The model a new user starts cold: the bundled one, unless a model was named.
  log('hand-off cost of an empty layer step…');
  const handOffs: Array<{ workers: number; sync: SyncMode; microseconds: number }> = [];
  for (const n of poolSizes) {
    for (const sync of ['atomics', 'comlink'] as const) handOffs.push({ workers: n, sync, microseconds: await handOff(models[0][1], n, sync) });
  }

  const [coldName, coldDir] = typeof custom === 'string' ? models[0] : ['bundled shakespeare', new URL('../public/models/shakespeare', import.meta.url).pathname];
  log(`cold start of ${coldName} from the model store…`);
  const cold = await coldStart(coldDir, Math.max(...poolSizes), runs);
  log(`next conversation turn on ${coldName}, with and without KV prefix reuse…`);
  const reuse = await prefixReuse(coldDir, Math.max(...poolSizes), runs);

  const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown', node: process.version };
  if (json) {
    process.stdout.write(JSON.stringify({ machine, runs, promptTokens: PROMPT_TOKENS, decodeTokens: DECODE_TOKENS, readBandwidthBytesPerSecond: Object.fromEntries(bandwidth), rows, peer, peerRatios: ratiosToPeer(peer, ours), handOffs, coldStart: { model: coldName, workers: Math.max(...poolSizes), ...cold }, prefixReuse: { model: coldName, ...reuse } }, null, 2) + '\n');
  } else {
    process.stdout.write(`${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; medians of ${runs} runs after 2 warm-up runs\n`);
    process.stdout.write(`read bandwidth (native scan): ${[...bandwidth].map(([n, b]) => `${n} thread${n > 1 ? 's' : ''} ${(b / 1e9).toFixed(1)} GB/s`).join(', ')}\n\n`);
    process.stdout.write(table(rows) + '\n');
    process.stdout.write('\n' + peerText(peer, peerModel, ours));
    process.stdout.write(`\nhand-off of one empty layer step (µs): ${handOffs.map((h) => `${h.workers} worker${h.workers > 1 ? 's' : ''} ${h.sync} ${h.microseconds.toFixed(0)}`).join(', ')}\n`);
    process.stdout.write(`\ncold start of ${coldName} to its first logits on ${Math.max(...poolSizes)} workers: ` +
      `${cold.storeMs.toFixed(0)} ms from the model store (fake-indexeddb), ${cold.diskMs.toFixed(0)} ms from disk\n`);
    process.stdout.write(`next conversation turn on ${coldName} (${reuse.historyTokens} tokens of history + ${reuse.newTokens} new): ` +
      `${reuse.reusedMs.toFixed(0)} ms reusing the cached prefix, ${reuse.freshMs.toFixed(0)} ms re-running it all (${(reuse.freshMs / reuse.reusedMs).toFixed(1)}×)\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`error: ${(e as Error).message}\n`);
  process.exit(e instanceof UsageError ? 2 : 1);
});
