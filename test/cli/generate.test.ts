import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readFixture, ROOT, TINY } from '../helpers/fixtures.ts';
import { tinyWithWindow } from '../helpers/model-bytes.ts';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/generate.ts'), ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('npm run generate', () => {
  const fixture = readFixture('tiny-logits');
  const hello = fixture.cases.find((c) => c.name === 'hello')!;

  it('--json prints one object per token with the top five logits of its step', () => {
    const r = cli('--model', TINY, '--ids', hello.prompt_ids.join(','), '--max-tokens', '8', '--greedy', '--json', '--workers', '0');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: number; text: string; logprob: number; top: [number, number][] });
    expect(lines.map((l) => l.id)).toEqual(hello.greedy_ids.slice(0, 8));
    // The first step's logits are the prefill's: compare the top five with PyTorch's.
    const want = fixture.logits(hello.prefill.offset);
    expect(lines[0].top).toHaveLength(5);
    for (const [id, logit] of lines[0].top) expect(logit).toBeCloseTo(want[id], 3);
    expect(lines[0].top[0][0]).toBe(lines[0].id);
    expect(lines.every((l) => l.logprob < 0)).toBe(true);
  });

  it('streams text for a text prompt and reports the run on stderr', () => {
    const r = cli('--model', TINY, '--prompt', 'hello my name is\n', '--max-tokens', '5', '--seed', '4', '--workers', '0');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(1);
    expect(r.stderr).toMatch(/5 tokens .* seed 4 .* stop: max-tokens/);
    expect(cli('--model', TINY, '--prompt', 'hello my name is\n', '--max-tokens', '5', '--seed', '4', '--workers', '0').stdout).toBe(r.stdout);
  });

  it('takes a 130,000-character prompt of spaces (it overflowed the stack in the tokenizer)', () => {
    const r = cli('--model', TINY, '--prompt', ' '.repeat(130_000), '--max-tokens', '2', '--greedy', '--workers', '0');
    expect(r.stderr).not.toMatch(/call stack/);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/kept its last \d+ tokens, dropped \d+/);
  });

  it('a model with a one-token window answers with one token and says why (it said "kept its last 0 tokens", then "the prompt is empty")', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'one-window-'));
    try {
      const { configText, bytes } = tinyWithWindow(1);
      await writeFile(join(dir, 'config.json'), configText);
      await writeFile(join(dir, 'model.safetensors'), bytes);
      const r = cli('--model', dir, '--prompt', 'hello my name is', '--max-tokens', '5', '--greedy', '--workers', '0');
      expect(r.code).toBe(0);
      expect(r.stderr).toContain("note: the prompt is longer than the model's 1 token window; kept its last 1 token, dropped 3, which leaves room for a reply of at most 1 token");
      expect(r.stderr).toMatch(/\[1 tokens? .* stop: context-full\]/);
      expect(r.stderr).not.toMatch(/empty/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [['--prompt', 'x'], /--model DIR is required/],
    [['--model', TINY], /exactly one of --prompt/],
    [['--model', TINY, '--prompt', 'x', '--ids', '1'], /exactly one of --prompt/],
    [['--model', TINY, '--ids', '1,,2'], /--ids must be/],
    [['--model', TINY, '--prompt', 'x', '--top-p', '2'], /--top-p must be/],
    [['--model', TINY, '--prompt', 'x', '--greedy', '--temperature', '1'], /--greedy cannot be combined/],
    [['--model', TINY, '--prompt', 'x', '--bogus'], /unknown option --bogus/],
    [['--model', join(ROOT, 'test'), '--prompt', 'x'], /bad model: config\.json/],
    [['--model', TINY, '--ids', '99999'], /outside the model's vocabulary/],
  ])('bad input %j: one line on stderr, non-zero exit', (args, message) => {
    const r = cli(...(args as string[]));
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message as RegExp);
    expect(r.stdout).toBe('');
  });
});
