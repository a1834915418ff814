import type { FloatDtype, SafetensorsHeader } from '../engine/safetensors.ts';
import { firstNonFinite, headerLength, isFloatDtype, parseHeader } from '../engine/safetensors.ts';
import { WeightsError } from '../engine/errors.ts';
import { parseConfig } from '../engine/config.ts';
import { matchTensors } from '../engine/weights.ts';
import { invalidModel } from './errors.ts';

// Checks a model.safetensors as its bytes go by, in file order (a download, an import, the stored
// part of a resumed download), holding nothing but the header: the header is parsed as soon as
// it is in (it states the file's exact size, so a download knows where to stop), and every value
// of every tensor the model uses is checked for NaN and infinity, which the engine would only
// find when loading the model. Failures are StoreError 'invalid-model'.

interface Span {
  name: string;
  dtype: FloatDtype;
  width: number;
  begin: number;
  end: number;
}

export class FileCheck {
  /** The header's bytes so far; it grows as they arrive, up to `headNeed`. */
  private head = new Uint8Array(8);
  private headFill = 0;
  /** 8 + the header length, once the first 8 bytes are in. */
  private headNeed = 8;
  private header: SafetensorsHeader | null = null;
  private spans: Span[] = [];
  /** Index of the first span not yet fully checked. */
  private next = 0;
  /** Bytes of an element cut by the end of the previous feed. */
  private carry = new Uint8Array(4);
  private carryFill = 0;
  /** Bytes fed so far: the file offset of the next byte. */
  private offset = 0;

  constructor(private readonly configText: string) {}

  /** The file's exact size, as its header states it; null until the header is in. */
  get size(): number | null {
    return this.header?.fileSize ?? null;
  }

  /** Bytes fed so far. */
  get fed(): number {
    return this.offset;
  }

  /** Takes the next bytes of the file; throws StoreError 'invalid-model' on a bad header or value. */
  feed(bytes: Uint8Array): void {
    try {
      let rest = bytes;
      if (this.header === null) rest = this.collectHeader(bytes);
      if (this.header !== null) this.scan(this.offset + bytes.length - rest.length, rest);
    } catch (e) {
      throw e instanceof WeightsError ? invalidModel(e) : e;
    }
    this.offset += bytes.length;
  }

  /** Appends header bytes; once the header is whole, parses it and returns the bytes after it. */
  private collectHeader(bytes: Uint8Array): Uint8Array {
    let used = 0;
    while (used < bytes.length && this.headFill < this.headNeed) {
      const take = Math.min(this.headNeed - this.headFill, bytes.length - used);
      if (this.headFill + take > this.head.length) {
        // Grow as bytes arrive: a header length of 10^8 from a server that then trickles must
        // not allocate 100 MB up front.
        const grown = new Uint8Array(Math.min(this.headNeed, Math.max(2 * this.head.length, this.headFill + take)));
        grown.set(this.head.subarray(0, this.headFill));
        this.head = grown;
      }
      this.head.set(bytes.subarray(used, used + take), this.headFill);
      this.headFill += take;
      used += take;
      if (this.headFill === 8 && this.headNeed === 8) this.headNeed = 8 + headerLength(this.head, null);
    }
    if (this.headFill < this.headNeed) return bytes.subarray(used);
    const header = parseHeader(this.head.subarray(0, this.headNeed), null);
    this.spans = matchTensors(parseConfig(this.configText), header).map(({ name, info }) => {
      if (!isFloatDtype(info.dtype)) throw new WeightsError('dtype', name, `unreadable dtype ${info.dtype}`);
      return { name, dtype: info.dtype, width: info.dtype === 'F32' ? 4 : 2, begin: info.begin, end: info.end };
    });
    this.header = header;
    this.head = new Uint8Array(0);
    return bytes.subarray(used);
  }

  /** Checks the values in `bytes`, which start at file offset `at`. */
  private scan(at: number, bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length && this.next < this.spans.length) {
      const t = this.spans[this.next];
      const pos = at + i;
      if (pos >= t.end) {
        this.next++;
        continue;
      }
      if (pos < t.begin) {
        i += Math.min(t.begin - pos, bytes.length - i);
        continue;
      }
      const avail = Math.min(t.end - pos, bytes.length - i);
      if (this.carryFill > 0) {
        // Complete the element the previous feed cut.
        const take = Math.min(t.width - this.carryFill, avail);
        this.carry.set(bytes.subarray(i, i + take), this.carryFill);
        this.carryFill += take;
        i += take;
        if (this.carryFill === t.width) {
          this.checkValues(t, this.carry.subarray(0, t.width), pos - (t.width - take));
          this.carryFill = 0;
        }
        continue;
      }
      const whole = avail - (avail % t.width);
      this.checkValues(t, bytes.subarray(i, i + whole), pos);
      i += whole;
      if (whole < avail) {
        this.carry.set(bytes.subarray(i, i + avail - whole));
        this.carryFill = avail - whole;
        i += avail - whole;
      }
    }
  }

  private checkValues(t: Span, values: Uint8Array, at: number): void {
    const k = firstNonFinite(t.dtype, values);
    if (k >= 0) {
      const element = (at - t.begin) / t.width + k;
      throw new WeightsError('values', t.name, `holds NaN or infinite values (element ${element}); the file cannot be used`);
    }
  }
}
