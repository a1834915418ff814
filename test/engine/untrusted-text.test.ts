import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/engine/config.ts';
import { MESSAGE_MAX, WeightsError } from '../../src/engine/errors.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import { displayText, displayValue, VALUE_MAX } from '../../src/engine/untrusted-text.ts';
import { loadWeights } from '../../src/engine/weights.ts';
import { ModelStore, StoreError } from '../../src/store/index.ts';
import { ROOT } from '../helpers/fixtures.ts';
import { memorySource, tinyConfigText, withHeader } from '../helpers/model-bytes.ts';
import { blob, harness } from '../store/helpers.ts';

// Names and values a file supplies are shown escaped and bounded: in the CLI's one-line errors
// and in the Models panel.

/** Any character a terminal or a page would act on instead of showing. */
const CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
const EVIL = 'h.0.\x1b[31mRED\x1b[0m\nerror: forged line\r\u202eeman\u0000';

async function loadError(bytes: Uint8Array): Promise<WeightsError> {
  const c = parseConfig(tinyConfigText());
  const e = await loadWeights(c, memorySource(bytes), planShards(c, 1)).then(() => null, (err: unknown) => err);
  expect(e).toBeInstanceOf(WeightsError);
  return e as WeightsError;
}

describe('displayText', () => {
  it('escapes control, bidi and invisible characters, one line', () => {
    expect(displayText('a\nb\tc\x1b[31m\u202e\u200b\u2028\x9b\ud800z')).toBe('a\\nb\\tc\\x1b[31m\\u{202e}\\u{200b}\\u{2028}\\x9b\\u{d800}z');
    expect(displayText('wte.weight')).toBe('wte.weight');
    expect(displayText('日本語 😀')).toBe('日本語 😀');
  });

  it('cuts long text with its full length, never splitting a character, and is idempotent', () => {
    const long = '😀'.repeat(5_000_000);
    const shown = displayText(long);
    expect(shown).toMatch(/^(😀)+… \(10,000,000 characters in all\)$/);
    expect(shown.length).toBeLessThan(VALUE_MAX + 40);
    for (const s of [shown, displayText(EVIL), displayText('x'.repeat(150))]) expect(displayText(s, 1000)).toBe(s);
  });

  it('shows JSON values bounded, however large or deeply nested', () => {
    expect(displayValue([64, 192])).toBe('[64, 192]');
    expect(displayValue('F17')).toBe('"F17"');
    expect(displayValue(undefined)).toBe('(missing)');
    expect(displayValue({ a: 'x\ny' })).toBe('{"a": "x\\ny"}');
    const big = new Array(1_000_000).fill(1);
    expect(displayValue(big)).toMatch(/^\[1, 1, .*… 1,000,000 items\]$/);
    let deep: unknown = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(displayValue(deep).length).toBeLessThan(4 * VALUE_MAX);
    expect(displayValue('x'.repeat(5e6)).length).toBeLessThan(VALUE_MAX + 40);
  });
});

describe('errors quoting a file are one bounded line', () => {
  it('a tensor name with a newline and ANSI codes', async () => {
    const e = await loadError(withHeader((h) => {
      h[EVIL] = { dtype: 'F17', shape: [0], data_offsets: [0, 0] };
    }));
    expect(e.code).toBe('dtype');
    expect(e.message).not.toMatch(CONTROL);
    expect(e.subject).not.toMatch(CONTROL);
    expect(e.message).toContain('\\x1b[31mRED');
  });

  it('a 5 MB dtype string', async () => {
    const e = await loadError(withHeader((h) => {
      h['wpe.weight'].dtype = 'F'.repeat(5e6);
    }));
    expect(e.code).toBe('dtype');
    expect(e.message.length).toBeLessThanOrEqual(MESSAGE_MAX + 40);
    expect(e.message).toMatch(/^wpe\.weight: unknown dtype "FFFF.*5,000,000 characters in all\)"$/);
  });

  it('a shape of a million dimensions and a huge config value', async () => {
    const e = await loadError(withHeader((h) => {
      h['wpe.weight'].shape = new Array(1e6).fill(-1);
    }));
    expect(e.message.length).toBeLessThanOrEqual(MESSAGE_MAX + 40);
    const ce = (() => {
      try {
        parseConfig({ ...JSON.parse(tinyConfigText()), model_type: `gpt\n${'2'.repeat(1e6)}` });
      } catch (err) {
        return err as WeightsError;
      }
      throw new Error('accepted');
    })();
    expect(ce.message).not.toMatch(CONTROL);
    expect(ce.message.length).toBeLessThanOrEqual(MESSAGE_MAX + 40);
  });

  it('a JSON syntax error quoting the file (V8 quotes the text it failed on)', () => {
    const e = (() => {
      try {
        parseConfig(`\x1b[31mRED\n${'x'.repeat(1e6)}`);
      } catch (err) {
        return err as WeightsError;
      }
      throw new Error('accepted');
    })();
    expect(e.code).toBe('config');
    expect(e.message).toMatch(/not valid JSON/);
    expect(e.message).not.toMatch(CONTROL);
    expect(e.message.length).toBeLessThanOrEqual(MESSAGE_MAX + 40);
  });

  it('a store import of such a file keeps the message bounded', async () => {
    const store: ModelStore = await harness().open();
    const bytes = withHeader((h) => {
      h['wpe.weight'].dtype = `\x1b[2J${'F'.repeat(5e6)}`;
    });
    const e = await store.importFiles(blob(tinyConfigText()), blob(bytes), 'evil').then(() => null, (err: unknown) => err);
    expect(e).toBeInstanceOf(StoreError);
    expect((e as StoreError).code).toBe('invalid-model');
    expect((e as StoreError).message.length).toBeLessThan(MESSAGE_MAX + 80);
    expect((e as StoreError).message).not.toMatch(CONTROL);
  });

  it('the CLI prints one line with no escape codes for a tensor name that carries them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'evil-model-'));
    try {
      await writeFile(join(dir, 'config.json'), tinyConfigText());
      await writeFile(join(dir, 'model.safetensors'), withHeader((h) => {
        h[EVIL] = { dtype: 'F17', shape: [0], data_offsets: [0, 0] };
      }));
      const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/generate.ts'), '--model', dir, '--prompt', 'hi', '--workers', '0'], { cwd: ROOT, encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).not.toMatch(CONTROL);
      expect(r.stderr).toMatch(/^error: bad model: h\.0\.\\x1b\[31mRED/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
