import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Prng } from '../../src/engine/prng.ts';
import type { Hasher } from '../../src/store/sha256.ts';
import { createSha256, sha256Hex, toHex } from '../../src/store/sha256.ts';

// The store hashes a model chunk by chunk as it arrives. Inputs and splits come from a seeded
// PRNG, so a failure names the seed that reproduces it.

const nodeHex = (d: Uint8Array): string => createHash('sha256').update(d).digest('hex');
const subtleHex = async (d: Uint8Array): Promise<string> =>
  toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', d as Uint8Array<ArrayBuffer>)));

function bytes(n: number, seed: number): Uint8Array {
  const rng = new Prng(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rng.next() * 256));
}

/** Feeds `data` to a hasher in seeded pieces: mostly small odd ones, sometimes big, sometimes empty. */
function digestInPieces(create: () => Hasher, data: Uint8Array, seed: number): string {
  const rng = new Prng(seed);
  const h = create();
  for (let p = 0; p < data.length; ) {
    const n = Math.floor(rng.next() * (seed % 2 ? 70 : 20_000));
    h.update(data.subarray(p, p + n));
    p += n;
  }
  return toHex(h.digest());
}

/** The seeds whose split digest differs from the one-shot digest. */
function failingSeeds(create: () => Hasher, data: Uint8Array, seeds: number[]): number[] {
  const want = nodeHex(data);
  return seeds.filter((seed) => digestInPieces(create, data, seed) !== want);
}

const SEEDS = Array.from({ length: 20 }, (_, i) => 1000 + i);

describe('incremental SHA-256 (@noble/hashes)', () => {
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
      const data = bytes(n, n);
      const got = sha256Hex(data);
      expect(got, `length ${n}`).toBe(nodeHex(data));
      expect(got, `length ${n}`).toBe(await subtleHex(data));
    }
  });

  it('gives the same digest however the input is split (seeded splits)', () => {
    const data = bytes(300_000, 7);
    expect(failingSeeds(createSha256, data, SEEDS), 'seeds whose split digest is wrong').toEqual([]);
  });

  it('the split check catches a hasher that mishandles piece boundaries', () => {
    // A hasher that drops empty and 1-byte pieces: the check must name the seeds where that happens.
    const sloppy = (): Hasher => {
      const h = createSha256();
      const wrapper: Hasher = { update: (d) => (d.length > 1 ? (h.update(d), wrapper) : wrapper), digest: () => h.digest() };
      return wrapper;
    };
    const bad = failingSeeds(sloppy, bytes(300_000, 7), SEEDS);
    expect(bad.length).toBeGreaterThan(0);
    expect(bad.every((s) => SEEDS.includes(s))).toBe(true);
  });

  it('refuses to be used after digest', () => {
    const h = createSha256();
    h.digest();
    expect(() => h.update(new Uint8Array(1))).toThrow();
    expect(() => h.digest()).toThrow();
  });
});
