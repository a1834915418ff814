// npm run generate -- --model DIR (--prompt TEXT | --ids 1,2,3) [--max-tokens N]
//   [--greedy | --temperature T --top-k K --top-p P --repetition-penalty R --seed S] [--workers N] [--json]
// Streams the reply to stdout; --json prints one object per token with the step's top five logits.

import { stderr, stdout } from 'node:process';
import type { Decoder } from '../engine/decoder.ts';
import { generate, Session } from '../engine/generate.ts';
import type { SamplerOptions } from '../engine/sampler.ts';
import { encode } from '../engine/tokenizer.ts';
import { openDecoder } from '../node/open-decoder.ts';
import { numberArg, parseArgs, UsageError } from './args.ts';
import { cliMain } from './main.ts';

const USAGE =
  'usage: npm run generate -- --model DIR (--prompt TEXT | --ids 1,2,3) [--max-tokens N] ' +
  '[--greedy | --temperature T --top-k K --top-p P --repetition-penalty R --seed S] [--workers N] [--json]';

const SAMPLING = ['temperature', 'top-k', 'top-p', 'repetition-penalty', 'seed'];

interface Request {
  model: string;
  prompt: number[];
  maxTokens: number;
  sampler: SamplerOptions;
  workers: number;
  json: boolean;
}

function readRequest(argv: string[]): Request {
  const args = parseArgs(argv, new Set(['greedy', 'json', 'help']), new Set(['model', 'prompt', 'ids', 'max-tokens', 'workers', ...SAMPLING]));
  if (args.has('help')) throw new UsageError(USAGE);
  const model = args.get('model');
  if (typeof model !== 'string') throw new UsageError('--model DIR is required');
  const text = args.get('prompt');
  const ids = args.get('ids');
  if ((text === undefined) === (ids === undefined)) throw new UsageError('give exactly one of --prompt TEXT or --ids 1,2,3');
  let prompt: number[];
  if (typeof text === 'string') {
    prompt = encode(text);
    if (prompt.length === 0) throw new UsageError('--prompt is empty');
  } else {
    const parts = String(ids).split(',');
    prompt = parts.map(Number);
    if (parts.some((p) => p.trim() === '') || prompt.some((v) => !Number.isInteger(v) || v < 0)) {
      throw new UsageError(`--ids must be comma-separated non-negative integers, got ${JSON.stringify(ids)}`);
    }
  }
  const greedy = args.has('greedy');
  if (greedy && SAMPLING.some((s) => args.has(s) && s !== 'seed')) throw new UsageError('--greedy cannot be combined with sampling options');
  const sampler: SamplerOptions = greedy
    ? { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 }
    : {
        temperature: numberArg(args, 'temperature', 0.8, (v) => v >= 0 && v <= 100, 'a number in [0, 100]'),
        topK: numberArg(args, 'top-k', 40, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer (0 = off)'),
        topP: numberArg(args, 'top-p', 0.95, (v) => v > 0 && v <= 1, 'a number in (0, 1]'),
        repetitionPenalty: numberArg(args, 'repetition-penalty', 1.1, (v) => v > 0 && v <= 100, 'a number in (0, 100]'),
        seed: numberArg(args, 'seed', Math.floor(Math.random() * 2 ** 31), (v) => Number.isInteger(v) && v >= 0 && v < 2 ** 32, 'an integer in [0, 2^32)'),
      };
  return {
    model,
    prompt,
    sampler,
    maxTokens: numberArg(args, 'max-tokens', 64, (v) => Number.isInteger(v) && v >= 1, 'a positive integer'),
    workers: numberArg(args, 'workers', -1, (v) => Number.isInteger(v) && v >= 0 && v <= 64, 'an integer in [0, 64] (0 = single-thread reference)'),
    json: args.has('json'),
  };
}

const tokens = (n: number): string => `${n} token${n === 1 ? '' : 's'}`;

function truncationNote(dropped: number, kept: number, window: number): string {
  // The last kept token's logits give one reply token even when the window is then full.
  return `note: the prompt is longer than the model's ${tokens(window)} window; kept its last ${tokens(kept)}, dropped ${dropped}, ` +
    `which leaves room for a reply of at most ${tokens(window - kept + 1)}\n`;
}

async function run(req: Request): Promise<void> {
  const decoder: Decoder = await openDecoder(req.model, req.workers);
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  try {
    for (const id of req.prompt) {
      if (id >= decoder.config.vocabSize) throw new UsageError(`token id ${id} is outside the model's vocabulary of ${decoder.config.vocabSize}`);
    }
    const session = new Session(decoder);
    const stream = generate(session, req.prompt, {
      maxTokens: req.maxTokens,
      sampler: req.sampler,
      signal: controller.signal,
      topLogits: req.json ? 5 : 0,
      onPromptTruncated: (dropped, kept) => stderr.write(truncationNote(dropped, kept, decoder.config.nPositions)),
    });
    let r = await stream.next();
    while (!r.done) {
      const t = r.value;
      stdout.write(req.json ? JSON.stringify({ id: t.id, text: t.text, logprob: t.logprob, top: t.top }) + '\n' : t.text);
      r = await stream.next();
    }
    const s = r.value;
    if (!req.json) stdout.write('\n');
    const rate = s.generatedTokens > 1 ? ((s.generatedTokens - 1) / s.decodeMs) * 1000 : 0;
    const m = decoder.mode;
    stderr.write(
      `[${s.generatedTokens} tokens · prompt ${s.promptTokens} in ${s.prefillMs.toFixed(0)} ms · ${rate.toFixed(1)} tok/s · ` +
        `${m.kind === 'reference' ? 'single-thread reference' : `${m.workers} workers (${m.sync})`} · ` +
        `${req.sampler.temperature === 0 ? 'greedy' : `seed ${req.sampler.seed}`} · stop: ${s.stopReason}]\n`,
    );
  } finally {
    await decoder.dispose();
  }
}

await cliMain(USAGE, (argv) => run(readRequest(argv)));
