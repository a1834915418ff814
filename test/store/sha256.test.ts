import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Sha256, sha256Hex, toHex } from '../../src/store/sha256.ts';

const nodeHex = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
const subtleHex = async (d: Uint8Array): Promise<string> =>
  toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', d as Uint8Array<ArrayBuffer>)));

describe('Sha256', () => {
  it('matches the FIPS 180-4 examples', () => {
    const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
    expect(sha256Hex(enc(''))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sha256Hex(enc('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256Hex(enc('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
  });

  it('agrees with crypto.subtle and node:crypto around every padding boundary', async () => {
    for (const n of [1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]) {
      const data = new Uint8Array(randomBytes(n));
      const got = sha256Hex(data);
      expect(got, `length ${n}`).toBe(nodeHex(data));
      expect(got, `length ${n}`).toBe(await subtleHex(data));
    }
  });

  it('gives the same digest however the input is split', async () => {
    const data = new Uint8Array(randomBytes(300_000));
    const want = await subtleHex(data);
    for (let trial = 0; trial < 20; trial++) {
      const h = new Sha256();
      let p = 0;
      while (p < data.length) {
        // Mostly small odd pieces, sometimes big ones, sometimes empty.
        const n = Math.floor(Math.random() * (trial % 2 ? 70 : 20_000));
        h.update(data.subarray(p, p + n));
        p += n;
      }
      expect(toHex(h.digest()), `trial ${trial}`).toBe(want);
    }
  });

  it('refuses to be used after digest', () => {
    const h = new Sha256();
    h.digest();
    expect(() => h.update(new Uint8Array(1))).toThrow();
    expect(() => h.digest()).toThrow();
  });
});
