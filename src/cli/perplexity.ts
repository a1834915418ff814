// npm run perplexity -- --model DIR --text-file F [--workers N] [--json]
// The model's perplexity on a text (src/engine/perplexity.ts): tokens scored, mean negative
// log-likelihood in nats, perplexity on stdout; progress on stderr.

import { readFile, stat } from 'node:fs/promises';
import { stderr, stdout } from 'node:process';
import { perplexity } from '../engine/perplexity.ts';
import type { PerplexityProgress } from '../engine/perplexity.ts';
import { encode } from '../engine/tokenizer.ts';
import { openDecoder } from '../node/open-decoder.ts';
import { numberArg, parseArgs, UsageError } from './args.ts';
import { cliMain } from './main.ts';

const USAGE = 'usage: npm run perplexity -- --model DIR --text-file F [--workers N] [--json]';
/** A text longer than this is surely a mistake (the whole of Tiny Shakespeare is 1.1 MB). */
const MAX_TEXT_BYTES = 256 << 20;

interface Request {
  model: string;
  textFile: string;
  workers: number;
  json: boolean;
}

function readRequest(argv: string[]): Request {
  const args = parseArgs(argv, new Set(['json', 'help']), new Set(['model', 'text-file', 'workers']));
  if (args.has('help')) throw new UsageError(USAGE);
  const model = args.get('model');
  const textFile = args.get('text-file');
  if (typeof model !== 'string') throw new UsageError('--model DIR is required');
  if (typeof textFile !== 'string') throw new UsageError('--text-file F is required');
  return {
    model,
    textFile,
    workers: numberArg(args, 'workers', -1, (v) => Number.isInteger(v) && v >= 0 && v <= 64, 'an integer in [0, 64] (0 = single-thread reference)'),
    json: args.has('json'),
  };
}

async function readText(path: string): Promise<string> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw new UsageError(`cannot read --text-file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!info.isFile()) throw new UsageError(`--text-file ${path} is not a regular file`);
  if (info.size > MAX_TEXT_BYTES) throw new UsageError(`--text-file ${path} is ${info.size} bytes; the limit is ${MAX_TEXT_BYTES}`);
  const text = await readFile(path, 'utf8');
  if (text.trim() === '') throw new UsageError(`--text-file ${path} is empty`);
  return text;
}

function progressLine(started: number): (p: PerplexityProgress) => void {
  const tty = stderr.isTTY === true;
  let lastAt = 0;
  return (p) => {
    const now = performance.now();
    const last = p.window === p.windows;
    if (!tty && !last && now - lastAt < 5000) return;
    lastAt = now;
    const rate = (p.tokensScored * 1000) / (now - started);
    const line = `window ${p.window}/${p.windows} · ${p.tokensScored}/${p.tokensTotal} tokens · ${rate.toFixed(0)} tok/s`;
    stderr.write(tty ? `\r${line}${last ? '\n' : ''}` : `${line}\n`);
  };
}

async function run(req: Request): Promise<void> {
  const ids = encode(await readText(req.textFile));
  if (ids.length < 2) throw new UsageError(`--text-file ${req.textFile} is ${ids.length} token long: perplexity needs at least two`);
  const decoder = await openDecoder(req.model, req.workers);
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  try {
    const r = await perplexity(decoder, ids, progressLine(performance.now()), controller.signal);
    stdout.write(req.json ? `${JSON.stringify(r)}\n` : `${r.tokens} tokens scored · nll ${r.nll.toFixed(4)} nats/token · perplexity ${r.ppl.toFixed(2)}\n`);
  } finally {
    await decoder.dispose();
  }
}

await cliMain(USAGE, (argv) => run(readRequest(argv)));
