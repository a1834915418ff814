import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { perplexity } from '../../src/engine/perplexity.ts';
import { encode } from '../../src/engine/tokenizer.ts';
import { openDecoder } from '../../src/node/open-decoder.ts';
import { referenceDecoder, ROOT, TINY } from '../helpers/fixtures.ts';

// The known answer: tools/perplexity_reference.py, float64 PyTorch over the same windows.
interface PerplexityFixture { text: string; window: number; ids: number[]; tokens: number; nll: number; ppl: number }
const fixture = JSON.parse(readFileSync(join(ROOT, 'test/fixtures/tiny-perplexity.json'), 'utf8')) as PerplexityFixture;
const TEXT = join(ROOT, fixture.text);

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/perplexity.ts'), ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('perplexity', () => {
  it('tokenizes the text as the reference did, into windows of n_positions with the last one shorter', () => {
    expect(encode(readFileSync(TEXT, 'utf8'))).toEqual(fixture.ids);
    expect(fixture.ids.length % fixture.window).not.toBe(0);
    expect(fixture.tokens).toBe(fixture.ids.length - Math.ceil(fixture.ids.length / fixture.window));
  });

  it('equals PyTorch on the single-thread reference and on a pool of 2 workers', async () => {
    for (const decoder of [await referenceDecoder(), await openDecoder(TINY, 2)]) {
      try {
        const r = await perplexity(decoder, fixture.ids);
        expect(r.tokens).toBe(fixture.tokens);
        expect(Math.abs(r.nll - fixture.nll) / fixture.nll).toBeLessThan(1e-4);
        expect(Math.abs(r.ppl - fixture.ppl) / fixture.ppl).toBeLessThan(1e-3);
      } finally {
        await decoder.dispose();
      }
    }
  });

  it('npm run perplexity --json prints {tokens, nll, ppl} and its progress on stderr', () => {
    const r = cli('--model', TINY, '--text-file', TEXT, '--workers', '0', '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { tokens: number; nll: number; ppl: number };
    expect(Object.keys(out)).toEqual(['tokens', 'nll', 'ppl']);
    expect(out.tokens).toBe(fixture.tokens);
    expect(Math.abs(out.nll - fixture.nll) / fixture.nll).toBeLessThan(1e-4);
    expect(r.stderr).toMatch(/window 3\/3 · 286\/286 tokens/);
  });

  it('bad input gets one line on stderr and a non-zero exit', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ppl-'));
    await writeFile(join(dir, 'empty.txt'), '  \n');
    await writeFile(join(dir, 'one.txt'), 'Hello');
    const cases: Array<[string[], RegExp]> = [
      [['--model', TINY], /--text-file F is required/],
      [['--model', TINY, '--text-file', join(dir, 'missing.txt')], /cannot read --text-file .*ENOENT/],
      [['--model', TINY, '--text-file', dir], /is not a regular file/],
      [['--model', TINY, '--text-file', join(dir, 'empty.txt')], /is empty/],
      [['--model', TINY, '--text-file', join(dir, 'one.txt')], /1 token long: perplexity needs at least two/],
      [['--model', dir, '--text-file', TEXT], /config\.json/],
    ];
    for (const [args, message] of cases) {
      const r = cli(...args);
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  });
});
