import { describe, expect, it } from 'vitest';
import { bytesOf, decode, encode, END_OF_TEXT, StreamingDetokenizer } from '../../src/engine/tokenizer.ts';

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
