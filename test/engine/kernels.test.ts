import { describe, expect, it } from 'vitest';
import { jsKernels as k } from '../../src/engine/kernels.ts';
import { Prng } from '../../src/engine/prng.ts';

const rng = new Prng(5);
const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.next() * 2 - 1);

function naiveMatmul(x: Float32Array, w: Float32Array, b: Float32Array | null, T: number, n: number, out: number): Float64Array {
  const y = new Float64Array(T * out);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < n; i++) s += x[t * n + i] * w[o * n + i];
      y[t * out + o] = s;
    }
  }
  return y;
}

const close = (got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-5): void => {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(tol * (1 + Math.abs(want[i])));
};

describe('kernels', () => {
  it('matmul and matmulAdd agree with a float64 loop for every row/column remainder', () => {
    for (const [T, n, out] of [[1, 13, 7], [3, 8, 4], [4, 5, 9], [9, 33, 6], [6, 64, 1]]) {
      const x = rand(T * n);
      const w = rand(out * n);
      const b = rand(out);
      const y = new Float32Array(T * out);
      k.matmul(y, x, w, b, T, n, out);
      close(y, naiveMatmul(x, w, b, T, n, out));
      k.matmul(y, x, w, null, T, n, out);
      close(y, naiveMatmul(x, w, null, T, n, out));
      const acc = rand(T * out);
      const want = naiveMatmul(x, w, null, T, n, out).map((v, i) => v + acc[i]);
      k.matmulAdd(acc, x, w, T, n, out);
      close(acc, want);
    }
  });

  it('a row gives the same bits in a prefill block and alone (decode)', () => {
    const [T, n, out] = [5, 48, 10];
    const x = rand(T * n);
    const w = rand(out * n);
    const all = new Float32Array(T * out);
    k.matmul(all, x, w, null, T, n, out);
    for (const t of [0, 3, 4]) {
      const one = new Float32Array(out);
      k.matmul(one, x.subarray(t * n, (t + 1) * n), w, null, 1, n, out);
      expect(Array.from(one)).toEqual(Array.from(all.subarray(t * out, (t + 1) * out)));
    }
  });

  it('layerNorm normalizes each row then applies gain and bias', () => {
    const x = Float32Array.from([1, 2, 3, 4, 10, 10, 10, 14]);
    const y = new Float32Array(8);
    k.layerNorm(y, x, Float32Array.from([1, 1, 2, 2]), Float32Array.from([0, 0, 0, 1]), 2, 4, 1e-5);
    const s = Math.sqrt(1.25 + 1e-5);
    close(y.subarray(0, 4), [-1.5 / s, -0.5 / s, 1 / s, 3 / s + 1]);
    const s2 = Math.sqrt(3 + 1e-5);
    close(y.subarray(4), [-1 / s2, -1 / s2, -2 / s2, 6 / s2 + 1]);
  });

  it('gelu is the tanh approximation', () => {
    const x = Float32Array.from([-3, -1, 0, 0.5, 2]);
    k.gelu(x, 5);
    const g = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
    close(x, [-3, -1, 0, 0.5, 2].map(g), 1e-6);
    expect(x[1]).toBeCloseTo(-0.158808, 5);
  });

  it('attend: causal softmax(q·k/√d) · v, never looking at later positions', () => {
    const hd = 4;
    const P = 6;
    const keys = rand(P * hd);
    const values = rand(P * hd);
    const q = rand(2 * hd);
    const out = new Float32Array(2 * hd);
    const pos = 2; // queries at positions 2 and 3
    // Garbage in positions 4..5 must not matter.
    keys.fill(1e3, 4 * hd);
    values.fill(1e3, 4 * hd);
    k.attend(out, 0, hd, q, 0, hd, keys, values, new Float32Array(P), 2, pos, hd);
    for (let t = 0; t < 2; t++) {
      const last = pos + t;
      const scores = Array.from({ length: last + 1 }, (_, j) => {
        let s = 0;
        for (let i = 0; i < hd; i++) s += q[t * hd + i] * keys[j * hd + i];
        return s / Math.sqrt(hd);
      });
      const m = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - m));
      const z = e.reduce((a, b) => a + b, 0);
      const want = Array.from({ length: hd }, (_, i) => e.reduce((a, p, j) => a + (p / z) * values[j * hd + i], 0));
      close(out.subarray(t * hd, (t + 1) * hd), want);
    }
  });
});
