import bpeRanks from 'gpt-tokenizer/bpeRanks/r50k_base';
import { decode as bpeDecode, encode as bpeEncode } from 'gpt-tokenizer/encoding/r50k_base';

// GPT-2's byte-level BPE (tiktoken's r50k_base), shared by every GPT-2-family checkpoint.

export const END_OF_TEXT = 50256;
export const END_OF_TEXT_STRING = '<|endoftext|>';

/** Plain text only: a literal "<|endoftext|>" typed by a user is text, not the control token. */
const PLAIN = { disallowedSpecial: new Set<string>() };

export function encode(text: string): number[] {
  return bpeEncode(text, PLAIN);
}

export function decode(ids: Iterable<number>): string {
  return bpeDecode(ids);
}

let tokenBytes: Uint8Array[] | null = null;

/** The raw bytes of every token: a token may hold half of a UTF-8 character. */
export function bytesOf(id: number): Uint8Array {
  if (tokenBytes === null) {
    const utf8 = new TextEncoder();
    tokenBytes = (bpeRanks as (string | number[])[]).map((t) => (typeof t === 'string' ? utf8.encode(t) : Uint8Array.from(t)));
    tokenBytes[END_OF_TEXT] = utf8.encode(END_OF_TEXT_STRING);
  }
  const b = tokenBytes[id];
  if (b === undefined) throw new RangeError(`token id ${id} is not in the GPT-2 vocabulary`);
  return b;
}

/**
 * Turns a stream of token ids into text without ever emitting half a character: bytes of an
 * emoji or a CJK character split across tokens are held back until the character is whole.
 */
export class StreamingDetokenizer {
  private decoder = new TextDecoder('utf-8');

  /** The text completed by this token ('' while a character is still incomplete). */
  push(id: number): string {
    return this.decoder.decode(bytesOf(id), { stream: true });
  }

  /** Whatever is still held back, with incomplete bytes as U+FFFD; resets the stream. */
  flush(): string {
    const rest = this.decoder.decode();
    this.decoder = new TextDecoder('utf-8');
    return rest;
  }
}
