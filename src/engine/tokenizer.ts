import bpeRanks from 'gpt-tokenizer/bpeRanks/r50k_base';
import { encode as bpeEncode, setMergeCacheSize } from 'gpt-tokenizer/encoding/r50k_base';

// GPT-2's byte-level BPE (tiktoken's r50k_base), shared by every GPT-2-family checkpoint.
//
// Bounded time and memory, whatever the text: BPE runs on the pieces of GPT-2's own pre-tokenizer
// (words, numbers, punctuation runs, whitespace runs), and gpt-tokenizer's merge loop is quadratic
// in a piece's length (and spreads its result as call arguments: a 130,000-space prompt overflowed
// the stack; a 130 kB one-word prompt took 24 s). So the text is split here with GPT-2's pattern
// and handed to gpt-tokenizer in chunks of whole pieces, which gives exactly the ids of encoding
// it whole, as long as a chunk never ends in whitespace: the pattern's `\s+(?!\S)` looks at the
// next character, and "}\n\n/**" is "}", "\n", "\n", "/**" but a chunk "}\n\n" would make "\n\n" one
// piece. (A piece alone always splits into itself.)
//
// BPE works on UTF-8 bytes, so a piece longer than MAX_PIECE_BYTES is cut into parts of at most
// that many bytes (between characters) first. That is the one place where ids may differ from
// unbounded BPE: near each cut of such a piece (a "word" of 257+ Latin letters or 86+ CJK
// characters with no punctuation, a run of 257+ spaces or dashes), a merge across the cut cannot
// happen. GPT-2's longest token has 66 bytes; the text always round-trips (decode(encode(s)) === s).

export const END_OF_TEXT = 50256;
export const END_OF_TEXT_STRING = '<|endoftext|>';

/** Longest pre-tokenized piece handed to BPE whole, in UTF-8 bytes. */
export const MAX_PIECE_BYTES = 256;
/** A chunk of whole pieces is cut at the first safe place after this many characters. */
export const CHUNK_CHARS = 4096;

/** GPT-2's pre-tokenizer (the r50k_base split pattern): every character falls in exactly one piece. */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Plain text only: a literal "<|endoftext|>" typed by a user is text, not the control token. */
const PLAIN = { disallowedSpecial: new Set<string>() };

// gpt-tokenizer caches the merges of every piece it has seen (100,000 by default); pieces are at
// most MAX_PIECE_BYTES long, so this bounds the cache to a few megabytes.
setMergeCacheSize(10_000);

const endsInSpace = (piece: string): boolean => /\s$/.test(piece);

/**
 * The strings encode() hands to gpt-tokenizer, in order; their concatenation is `text`. Each is
 * a chunk of whole pieces that does not end in whitespace (except the text's own end), a single
 * piece, or a part of a piece longer than MAX_PIECE_BYTES.
 */
export function* bpeInputs(text: string): Generator<string> {
  let start = 0; // of the chunk being gathered
  let safe = 0; // end of its last piece that does not end in whitespace
  const tail: number[] = []; // ends of the pieces after `safe`
  for (const m of text.matchAll(GPT2_SPLIT)) {
    const piece = m[0];
    const end = m.index + piece.length;
    if (piece.length * 3 > MAX_PIECE_BYTES && utf8Length(piece) > MAX_PIECE_BYTES) {
      // Flush what precedes it: the chunk up to `safe`, then the whitespace pieces one by one.
      if (safe > start) yield text.slice(start, safe);
      let from = safe;
      for (const to of tail) yield text.slice(from, (from = to));
      yield* cut(piece);
      start = safe = end;
      tail.length = 0;
      continue;
    }
    if (endsInSpace(piece)) {
      tail.push(end);
      continue;
    }
    safe = end;
    tail.length = 0;
    if (safe - start >= CHUNK_CHARS) {
      yield text.slice(start, safe);
      start = safe;
    }
  }
  if (start < text.length) yield text.slice(start);
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdbff ? (i++, 4) : 3;
  }
  return n;
}

/** `piece` in parts of at most MAX_PIECE_BYTES UTF-8 bytes, cut between characters. */
function* cut(piece: string): Generator<string> {
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < piece.length; ) {
    const cp = piece.codePointAt(i)!;
    const units = cp > 0xffff ? 2 : 1;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + size > MAX_PIECE_BYTES) {
      yield piece.slice(start, i);
      start = i;
      bytes = 0;
    }
    bytes += size;
    i += units;
  }
  yield piece.slice(start);
}

export function encode(text: string): number[] {
  const ids: number[] = [];
  for (const chunk of bpeInputs(text)) {
    for (const id of bpeEncode(chunk, PLAIN)) ids.push(id);
  }
  return ids;
}

/**
 * The text of `ids` (bytes that do not form whole characters become U+FFFD). Linear in the
 * number of ids: gpt-tokenizer's decode copies its byte buffer once per token that is not whole
 * UTF-8, which is quadratic on text such as a long run of emoji.
 */
export function decode(ids: Iterable<number>): string {
  const parts: Uint8Array[] = [];
  let length = 0;
  for (const id of ids) {
    const b = bytesOf(id);
    parts.push(b);
    length += b.length;
  }
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const b of parts) {
    bytes.set(b, at);
    at += b.length;
  }
  return new TextDecoder('utf-8').decode(bytes);
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
