import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { encode as unbounded } from 'gpt-tokenizer/encoding/r50k_base';
import { describe, expect, it } from 'vitest';
import { bpeInputs, bytesOf, CHUNK_CHARS, decode, encode, END_OF_TEXT, GPT2_SPLIT, MAX_PIECE_BYTES, StreamingDetokenizer } from '../../src/engine/tokenizer.ts';
import { ROOT } from '../helpers/fixtures.ts';

describe('GPT-2 byte-level BPE (r50k_base)', () => {
  it('tokenizes the seed example', () => {
    expect(encode('hello my name is\n')).toEqual([31373, 616, 1438, 318, 198]);
    expect(decode([31373, 616, 1438, 318, 198])).toBe('hello my name is\n');
  });

  it('treats a typed "<|endoftext|>" as text, not as the control token', () => {
    const ids = encode('a <|endoftext|> b');
    expect(ids).not.toContain(END_OF_TEXT);
    expect(decode(ids)).toBe('a <|endoftext|> b');
  });
});

/** Encoding with gpt-tokenizer in one call, as before chunking (unbounded in time and stack). */
const whole = (text: string): number[] => unbounded(text, { disallowedSpecial: new Set() });

/** Text of every kind the app sees: prose, verse, code with indentation, markup, many scripts. */
function normalText(): string {
  const files = [join(ROOT, 'README.md'), ...readdirSync(join(ROOT, 'src/engine')).map((f) => join(ROOT, 'src/engine', f))];
  const sample =
    "ROMEO:\nBut soft, what light through yonder window breaks?\n\nI'm sure you'll say it's fine, we've done it, they're here, he'd go.\n" +
    'Numbers 3.14159, 1,000,000 and 2024-06-01; emoji 😀👍🏽🎉, 日本語のテキスト, Ελληνικά, العربية, עברית, हिन्दी.\n' +
    `\t\tTabs,   runs  of   spaces,\r\nCRLF, ${'x'.repeat(MAX_PIECE_BYTES - 1)} and ${'日'.repeat(85)}, and ${'-'.repeat(80)} and <|endoftext|>.\n`;
  return [sample, ...files.filter((f) => f.endsWith('.ts') || f.endsWith('.md')).map((f) => readFileSync(f, 'utf8'))].join('\n');
}

describe('tokenizing in bounded pieces', () => {
  it('gives the same ids as encoding whole, on normal text in many chunks', () => {
    const text = normalText();
    expect(text.length).toBeGreaterThan(100_000);
    expect([...bpeInputs(text)].length).toBeGreaterThan(20);
    expect(encode(text)).toEqual(whole(text));
    expect(encode('hello my name is\n')).toEqual([31373, 616, 1438, 318, 198]);
  });

  it('gives the same ids where a chunk could end: pieces that depend on the next character', () => {
    // `\s+(?!\S)` splits "\n\n/" into "\n", "\n", "/": a chunk ending in "}\n\n" would not.
    for (const shift of [-3, -2, -1, 0, 1, 2, 3]) {
      for (const around of ['}\n\n/**', "x's  \t 'll\n \n y", '   x', 'x   \n']) {
        const text = `${'ab '.repeat(CHUNK_CHARS).slice(0, CHUNK_CHARS + shift)}${around}${' word'.repeat(50)}`;
        expect(encode(text), `${shift} ${JSON.stringify(around)}`).toEqual(whole(text));
      }
    }
    // Also just before a piece long enough to be cut.
    expect(encode(`x\n\n${'A'.repeat(300)}`).slice(0, 3)).toEqual(whole('x\n\nA').slice(0, 3));
  });

  it.each([
    ['130,000 spaces', ' '.repeat(130_000)],
    ['a 130 kB one-word prompt', 'a'.repeat(130_000)],
    ['a long word of varied letters', 'abcdefghijklmnopqrstuvwxyz'.repeat(5000)],
    ['130,000 dashes', '-'.repeat(130_000)],
    ['30,000 emoji (surrogate pairs)', '😀'.repeat(30_000)],
    ['40,000 CJK characters', '日本語'.repeat(13_333)],
    ['100,000 newlines', '\n'.repeat(100_000)],
  ])('%s: bounded pieces, bounded BPE work, and the text round-trips', (_, text) => {
    const inputs = [...bpeInputs(text)];
    expect(inputs.join('')).toBe(text);
    const utf8 = new TextEncoder();
    let work = 0;
    for (const input of inputs) {
      expect(input.length).toBeLessThanOrEqual(CHUNK_CHARS + 2 * MAX_PIECE_BYTES);
      expect(input).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
      // What gpt-tokenizer does with it: split it again, then merge byte pairs in each piece.
      for (const [piece] of input.matchAll(GPT2_SPLIT)) {
        const bytes = utf8.encode(piece).length;
        expect(bytes).toBeLessThanOrEqual(MAX_PIECE_BYTES);
        work += bytes ** 2; // the merge loop's cost on one piece
      }
    }
    expect(work).toBeLessThanOrEqual(utf8.encode(text).length * MAX_PIECE_BYTES);
    const ids = encode(text);
    expect(decode(ids)).toBe(text);
  });

  it('documents the one difference: a piece longer than MAX_PIECE_BYTES is encoded as its parts', () => {
    const word = ' ' + 'qz'.repeat(MAX_PIECE_BYTES); // one pre-tokenizer piece of 513 bytes
    const parts = [word.slice(0, MAX_PIECE_BYTES), word.slice(MAX_PIECE_BYTES, 2 * MAX_PIECE_BYTES), word.slice(2 * MAX_PIECE_BYTES)];
    expect(encode(word)).toEqual(parts.flatMap(whole));
    expect(decode(encode(word))).toBe(word);
  });
});

describe('streaming detokenization never emits a broken character', () => {
  const text = 'Hi 😀! 日本語 👍🏽 and 🎉.';
  const ids = encode(text);

  it('the sample really splits characters across tokens', () => {
    // Some tokens hold only part of a character's UTF-8 bytes: alone they are not valid text.
    const strict = new TextDecoder('utf-8', { fatal: true });
    const broken = ids.filter((id) => {
      try {
        strict.decode(bytesOf(id));
        return false;
      } catch {
        return true;
      }
    });
    expect(broken.length).toBeGreaterThan(2);
  });

  it('every piece is whole, each character comes out once, and the pieces add up to the text', () => {
    const detok = new StreamingDetokenizer();
    const pieces = ids.map((id) => detok.push(id));
    pieces.push(detok.flush());
    for (const p of pieces) expect(p).not.toContain('\uFFFD');
    expect(pieces.join('')).toBe(text);
    expect(pieces.filter((p) => p.includes('😀'))).toHaveLength(1);
    expect(pieces.some((p) => p === '')).toBe(true); // at least one token was held back
  });

  it('a reply cut in the middle of a character flushes a replacement, not garbage bytes', () => {
    const emoji = encode('😀');
    expect(emoji.length).toBeGreaterThan(1);
    const detok = new StreamingDetokenizer();
    expect(detok.push(emoji[0])).toBe('');
    expect(detok.flush()).toBe('\uFFFD');
    // and the detokenizer is clean again afterwards
    expect(emoji.map((id) => detok.push(id)).join('')).toBe('😀');
  });
});
