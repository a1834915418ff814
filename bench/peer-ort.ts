// The benchmark's peer: the same weights run by onnxruntime-web (the runtime transformers.js runs
// GPT-2 on: WebAssembly SIMD, threads), measured in the same run as our engine.
//
//   model dir ──/usr/bin/python3 tools/export_onnx.py──▶ model.onnx (float32, KV cache)
//             ──tools/quantize_onnx_int8.py──────────▶ model-int8.onnx (quantize_dynamic's rewrite)
//   both cached in the temp dir under a hash of the weights and of the two tools.
//
// onnxruntime-web reads `env.wasm.numThreads` once per process, when its WebAssembly starts, so
// every (graph, threads) pair is measured in a child process: this file, run with `--peer-child`.
// Its first run also returns two logit rows, which the parent compares with our engine's reference
// decoder on the same weights: the proof that both sides run the same model.

import { fork, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { GPT2Config } from '../src/engine/config.ts';
import { argmax } from '../src/engine/sampler.ts';
import { openModelDir } from '../src/node/model-dir.ts';
import { openDecoder } from '../src/node/open-decoder.ts';

export type PeerWeights = 'float32' | 'int8';

export interface PeerRow {
  runtime: 'onnxruntime-web';
  weights: PeerWeights;
  threads: number;
  /** Runtime start-up (WebAssembly compile, thread pool) + session creation from the file. */
  loadMs: number;
  prefillMs: number;
  decodeTokensPerSecond: number;
  /** CPU time / wall time over the timed runs: how many cores its threads kept busy. */
  coresBusy: number;
}

export interface PeerFailure {
  runtime: 'onnxruntime-web';
  weights: PeerWeights;
  threads: number;
  error: string;
}

/** How far a peer's logits are from our reference decoder's: the prompt's last row, then the next token's. */
export interface LogitAgreement {
  weights: PeerWeights;
  maxAbsDiff: number;
  /** maxAbsDiff / max |reference logit|. */
  relative: number;
  sameArgmax: boolean;
}

export type PeerReport =
  | { skipped: string }
  | {
      /** onnxruntime-web's version, as the measuring processes reported it. */
      version: string;
      onnx: Record<PeerWeights, { path: string; bytes: number }>;
      promptTokens: number;
      decodeTokens: number;
      rows: Array<PeerRow | PeerFailure>;
      agreement: LogitAgreement[];
      /** The float32 peer agrees with our engine to AGREEMENT_TOLERANCE. */
      sameModel: boolean;
    };

/** Relative logit tolerance for "the same model": both sides are float32 with different sums. */
export const AGREEMENT_TOLERANCE = 1e-4;

export class PeerSkip extends Error {
  override readonly name = 'PeerSkip';
}

const here = dirname(fileURLToPath(import.meta.url));
const TOOLS = { export: join(here, '../tools/export_onnx.py'), quantize: join(here, '../tools/quantize_onnx_int8.py') };
const REFERENCE_TOOL = join(here, '../tools/reference_gpt2.py');

// ───────────────────────────── ONNX files, made once per weights ─────────────────────────────

/** Runs a command; resolves with its stdout, rejects with the last line of its stderr. */
function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', (e) => fail(new Error(e.message)));
    child.on('close', (code) => {
      if (code === 0) done(out);
      else fail(new Error(err.trim().split('\n').pop() || `exit code ${code}`));
    });
  });
}

async function hashFiles(paths: string[]): Promise<string> {
  const h = createHash('sha256');
  for (const p of paths) {
    h.update(`\0${p.slice(p.lastIndexOf('/') + 1)}\0`);
    for await (const chunk of createReadStream(p)) h.update(chunk as Buffer);
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * The float32 and int8 ONNX files of a model directory, exported on first use into the temp dir.
 * Throws PeerSkip (with the reason) where python, torch or onnx is missing or the export fails.
 */
export async function prepareOnnx(
  dir: string,
  log: (s: string) => void = () => {},
  python = '/usr/bin/python3',
): Promise<Record<PeerWeights, string>> {
  const weights = [join(dir, 'config.json'), join(dir, 'model.safetensors')];
  for (const f of weights) if (!existsSync(f)) throw new PeerSkip(`${f} not found`);
  if (!existsSync(python)) throw new PeerSkip(`${python} not found (the ONNX export needs Debian's python3 with torch and onnx)`);
  try {
    await run(python, ['-c', 'import torch, onnx, numpy']);
  } catch (e) {
    throw new PeerSkip(`${python} cannot import torch, onnx and numpy: ${(e as Error).message}`);
  }
  const id = await hashFiles([...weights, TOOLS.export, TOOLS.quantize, REFERENCE_TOOL]);
  const cache = join(tmpdir(), 'gpt2-peer-onnx', id);
  mkdirSync(cache, { recursive: true });
  const files = { float32: join(cache, 'model.onnx'), int8: join(cache, 'model-int8.onnx') };
  // Both tools write OUT.<pid>.partial and rename it, so a file here is always a finished one.
  if (!existsSync(files.float32)) {
    log(`peer: exporting ${dir} to ONNX (float32, KV cache; once per weights)…`);
    await run(python, [TOOLS.export, dir, files.float32]).catch((e: Error) => {
      throw new PeerSkip(`ONNX export failed: ${e.message}`);
    });
  }
  if (!existsSync(files.int8)) {
    log('peer: quantizing the ONNX graph to int8 (DynamicQuantizeLinear + MatMulInteger)…');
    await run(python, [TOOLS.quantize, files.float32, files.int8]).catch((e: Error) => {
      throw new PeerSkip(`int8 quantization failed: ${e.message}`);
    });
  }
  return files;
}

// ───────────────────────────── one measurement, in a child process ─────────────────────────────

export interface MeasureRequest {
  onnx: string;
  threads: number;
  ids: number[];
  decodeTokens: number;
  runs: number;
  warmups: number;
  /** The id the first run feeds after the prompt (our engine's greedy choice), for the logit check. */
  checkId: number;
}

export interface MeasureResult {
  version: string;
  loadMs: number;
  prefillMs: number;
  decodeTokensPerSecond: number;
  coresBusy: number;
  /** The first run's logits at the prompt's last position and after `checkId`, as base64 float32. */
  check: { prefill: string; next: string };
}

type ChildMessage = { ok: MeasureResult } | { error: string };

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const toBase64 = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
const fromBase64 = (s: string): Float32Array => {
  const b = Buffer.from(s, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

function argmaxRow(data: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (data[offset + i] > data[offset + best]) best = i;
  return best;
}

/** Child side: greedy prefill + decode with onnxruntime-web, medians over `runs` after warm-ups. */
async function measure(req: MeasureRequest): Promise<MeasureResult> {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.numThreads = req.threads;
  ort.env.wasm.simd = true;
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(req.onnx, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' }).catch((e: Error) => {
    throw new Error(`onnxruntime-web could not open ${req.onnx}: ${e.message}`);
  });
  const loadMs = performance.now() - t0;
  if (ort.env.wasm.numThreads !== req.threads) throw new Error(`onnxruntime-web runs ${ort.env.wasm.numThreads} threads, not ${req.threads}`);
  const past = session.inputNames.filter((n) => n.startsWith('past_key_values.'));
  const key = session.inputMetadata.find((m) => m.name === past[0]);
  if (!key || !key.isTensor) throw new Error(`${req.onnx} has no past_key_values inputs`);
  const [, heads, , headDim] = key.shape as number[];
  type Feeds = Record<string, InstanceType<typeof ort.Tensor>>;
  const ids = (xs: ArrayLike<number>): InstanceType<typeof ort.Tensor> =>
    new ort.Tensor('int64', BigInt64Array.from(Array.from(xs, BigInt)), [1, xs.length]);
  const empty: Feeds = Object.fromEntries(past.map((n) => [n, new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, headDim])]));
  const step = async (input: ArrayLike<number>, cache: Feeds): Promise<{ logits: Float32Array; vocab: number; cache: Feeds }> => {
    const out = await session.run({ input_ids: ids(input), ...cache });
    const next: Feeds = {};
    for (const n of past) next[n] = out[n.replace('past_key_values.', 'present.')];
    return { logits: out.logits.data as Float32Array, vocab: out.logits.dims[2], cache: next };
  };

  const prefill: number[] = [];
  const tps: number[] = [];
  let check: MeasureResult['check'] | null = null;
  let cpuMs = 0;
  let wallMs = 0;
  for (let r = 0; r < req.warmups + req.runs; r++) {
    const cpu = process.cpuUsage();
    const t1 = performance.now();
    let s = await step(req.ids, empty);
    const t2 = performance.now();
    const last = s.logits.slice((req.ids.length - 1) * s.vocab);
    let next = r === 0 ? req.checkId : argmaxRow(last, 0, s.vocab);
    for (let i = 0; i < req.decodeTokens; i++) {
      s = await step([next], s.cache);
      if (r === 0 && i === 0) check = { prefill: toBase64(last), next: toBase64(s.logits.slice(0, s.vocab)) };
      next = argmaxRow(s.logits, 0, s.vocab);
    }
    const t3 = performance.now();
    if (r < req.warmups) continue;
    const used = process.cpuUsage(cpu);
    cpuMs += (used.user + used.system) / 1000;
    wallMs += t3 - t1;
    prefill.push(t2 - t1);
    tps.push((req.decodeTokens * 1000) / (t3 - t2));
  }
  await session.release();
  return { version: ort.env.versions.web ?? 'unknown', loadMs, prefillMs: median(prefill), decodeTokensPerSecond: median(tps), coresBusy: cpuMs / wallMs, check: check! };
}

/** Parent side: runs `measure` in a fresh Node process (this file, with tsx's loader). */
export function measureInChild(req: MeasureRequest): Promise<MeasureResult> {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return new Promise((done, fail) => {
    const child = fork(fileURLToPath(import.meta.url), ['--peer-child'], {
      execArgv: ['--import', tsx],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let err = '';
    let answer: ChildMessage | null = null;
    child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    child.on('message', (m) => (answer = m as ChildMessage));
    child.on('error', (e) => fail(e));
    child.on('exit', (code, signal) => {
      const a = answer as ChildMessage | null;
      if (a && 'ok' in a) done(a.ok);
      else fail(new Error(a?.error ?? `the child process ended (${signal ?? `code ${code}`}): ${err.trim().split('\n').pop() ?? ''}`));
    });
    child.send(req);
  });
}

// ───────────────────────────── the peer's part of the benchmark ─────────────────────────────

export interface PeerOptions {
  /** The model directory our engine was measured on. */
  dir: string;
  /** The prompt our bench uses for this model's config. */
  prompt: (config: GPT2Config) => number[];
  decodeTokens: number;
  runs: number;
  warmups?: number;
  threads?: number[];
  log?: (s: string) => void;
  python?: string;
}

interface Reference {
  prefill: Float32Array;
  nextId: number;
  next: Float32Array;
}

/** Our single-thread reference decoder's logits at the prompt's end and after its greedy next id. */
async function referenceLogits(dir: string, ids: number[]): Promise<Reference> {
  const decoder = await openDecoder(dir, 0);
  try {
    const prefill = (await decoder.step(ids)).slice();
    const nextId = argmax(prefill, prefill.length);
    return { prefill, nextId, next: (await decoder.step([nextId])).slice() };
  } finally {
    await decoder.dispose();
  }
}

function agreement(weights: PeerWeights, ours: Float32Array[], peer: Float32Array[]): LogitAgreement {
  let maxAbsDiff = 0;
  let maxRef = 0;
  let sameArgmax = true;
  for (let k = 0; k < 2; k++) {
    const [a, b] = [ours[k], peer[k]];
    if (a.length !== b.length) throw new Error(`the peer's vocabulary is ${b.length}, ours ${a.length}`);
    for (let i = 0; i < a.length; i++) {
      maxAbsDiff = Math.max(maxAbsDiff, Math.abs(a[i] - b[i]));
      maxRef = Math.max(maxRef, Math.abs(a[i]));
    }
    sameArgmax &&= argmaxRow(a, 0, a.length) === argmaxRow(b, 0, b.length);
  }
  return { weights, maxAbsDiff, relative: maxAbsDiff / maxRef, sameArgmax };
}

/**
 * Measures onnxruntime-web on the model in `dir` (float32 and int8 graphs × `threads`) and checks
 * its logits against ours. Never throws for the peer's sake: a missing python, a failed export or
 * a failed runtime comes back as `{ skipped }` or as a failure row.
 */
export async function benchPeer(o: PeerOptions): Promise<PeerReport> {
  const log = o.log ?? (() => {});
  let files: Record<PeerWeights, string>;
  try {
    files = await prepareOnnx(o.dir, log, o.python);
  } catch (e) {
    if (e instanceof PeerSkip) return { skipped: e.message };
    return { skipped: `ONNX export failed: ${(e as Error).message}` };
  }
  let ids: number[];
  let ours: Reference;
  try {
    const model = await openModelDir(o.dir);
    await model.close();
    ids = o.prompt(model.config);
    log('peer: our reference decoder on the prompt, for the logit check…');
    ours = await referenceLogits(o.dir, ids);
  } catch (e) {
    return { skipped: `our reference decoder could not run ${o.dir}: ${(e as Error).message}` };
  }
  let version = 'unknown';
  const rows: Array<PeerRow | PeerFailure> = [];
  const agreements = new Map<PeerWeights, LogitAgreement>();
  for (const weights of ['float32', 'int8'] as const) {
    for (const threads of o.threads ?? [1, 2]) {
      log(`peer: onnxruntime-web ${weights}, ${threads} thread${threads > 1 ? 's' : ''}…`);
      try {
        const m = await measureInChild({
          onnx: files[weights], threads, ids, decodeTokens: o.decodeTokens, runs: o.runs, warmups: o.warmups ?? 2, checkId: ours.nextId,
        });
        version = m.version;
        rows.push({ runtime: 'onnxruntime-web', weights, threads, loadMs: m.loadMs, prefillMs: m.prefillMs, decodeTokensPerSecond: m.decodeTokensPerSecond, coresBusy: m.coresBusy });
        if (!agreements.has(weights)) {
          agreements.set(weights, agreement(weights, [ours.prefill, ours.next], [fromBase64(m.check.prefill), fromBase64(m.check.next)]));
        }
      } catch (e) {
        rows.push({ runtime: 'onnxruntime-web', weights, threads, error: (e as Error).message });
      }
    }
  }
  const sizes = (p: string): { path: string; bytes: number } => ({ path: p, bytes: statSync(p).size });
  const f32Agreement = agreements.get('float32');
  return {
    version,
    onnx: { float32: sizes(files.float32), int8: sizes(files.int8) },
    promptTokens: ids.length,
    decodeTokens: o.decodeTokens,
    rows,
    agreement: [...agreements.values()],
    sameModel: f32Agreement !== undefined && f32Agreement.relative <= AGREEMENT_TOLERANCE,
  };
}

// ───────────────────────────── printing ─────────────────────────────

export interface OurRow {
  name: string;
  loadMs: number;
  prefillMs: number;
  decodeTokensPerSecond: number;
}

/** The row every ratio is taken against: onnxruntime-web float32 on 2 threads (else the most threads). */
export function baselineRow(report: PeerReport): PeerRow | null {
  if ('skipped' in report) return null;
  const ok = report.rows.filter((r): r is PeerRow => !('error' in r) && r.weights === 'float32');
  return ok.find((r) => r.threads === 2) ?? ok.sort((a, b) => b.threads - a.threads)[0] ?? null;
}

export interface PeerRatio {
  name: string;
  /** Peer prefill time / ours: above 1 means we prefill faster. */
  prefill: number;
  /** Our decode tokens/s / the peer's. */
  decode: number;
}

export function ratiosToPeer(report: PeerReport, ours: OurRow[]): PeerRatio[] {
  const base = baselineRow(report);
  if (!base) return [];
  return ours.map((r) => ({ name: r.name, prefill: base.prefillMs / r.prefillMs, decode: r.decodeTokensPerSecond / base.decodeTokensPerSecond }));
}

const describePeer = (r: { weights: PeerWeights; threads: number }): string => `onnxruntime-web ${r.weights}, ${r.threads} thread${r.threads > 1 ? 's' : ''}`;

export function peerText(report: PeerReport, model: string, ours: OurRow[]): string {
  if ('skipped' in report) return `peer skipped: ${report.skipped}\n`;
  const mb = (b: number): string => `${(b / 1e6).toFixed(0)} MB`;
  const lines = [
    `peer on ${model}: onnxruntime-web ${report.version} (wasm, SIMD) on the same weights exported to ONNX with a KV cache ` +
      `(float32 ${mb(report.onnx.float32.bytes)}, int8 ${mb(report.onnx.int8.bytes)})`,
    '',
    `| peer | load ms | prefill ${report.promptTokens} tok, ms | decode tok/s | cores busy |`,
    '|---|---:|---:|---:|---:|',
    ...report.rows.map((r) => ('error' in r
      ? `| ${describePeer(r)} | failed: ${r.error} | | | |`
      : `| ${describePeer(r)} | ${r.loadMs.toFixed(0)} | ${r.prefillMs.toFixed(1)} | ${r.decodeTokensPerSecond.toFixed(1)} | ${r.coresBusy.toFixed(2)} |`)),
  ];
  for (const a of report.agreement) {
    lines.push(`${a.weights} peer logits vs our reference decoder: max |Δ| ${a.maxAbsDiff.toExponential(2)} ` +
      `(${a.relative.toExponential(2)} of the largest logit), same argmax: ${a.sameArgmax ? 'yes' : 'no'}`);
  }
  if (!report.sameModel) lines.push(`WARNING: the float32 peer does not reproduce our logits to ${AGREEMENT_TOLERANCE}: the ratios below compare different computations`);
  const base = baselineRow(report);
  if (base) {
    lines.push('', `ours as ratios to ${describePeer(base)} (prefill: its time / ours; decode: our tok/s / its):`, '',
      '| engine | prefill × peer | decode × peer |', '|---|---:|---:|',
      ...ratiosToPeer(report, ours).map((r) => `| ${r.name} | ${r.prefill.toFixed(2)} | ${r.decode.toFixed(2)} |`));
  }
  return lines.join('\n') + '\n';
}

// ───────────────────────────── child entry ─────────────────────────────

if (process.argv[2] === '--peer-child' && resolve(process.argv[1] ?? '') === fileURLToPath(import.meta.url)) {
  process.once('message', (req) => {
    measure(req as MeasureRequest).then(
      (ok) => process.send!({ ok } satisfies ChildMessage, () => process.exit(0)),
      (e: unknown) => process.send!({ error: (e as Error).message } satisfies ChildMessage, () => process.exit(1)),
    );
  });
}
