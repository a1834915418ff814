import { describe, expect, it } from 'vitest';
import type { SamplerOptions } from '../../src/engine/sampler.ts';
import { argmax, GREEDY, Sampler, topIndices } from '../../src/engine/sampler.ts';

const V = 1000;
/** Logits whose softmax is known: token i has logit log(weights[i]). */
function logitsFrom(weights: number[]): Float32Array {
  const l = new Float32Array(V).fill(-1e9);
  weights.forEach((w, i) => (l[i * 7] = Math.log(w)));
  return l;
}
const opts = (o: Partial<SamplerOptions>): SamplerOptions => ({ temperature: 1, topK: 0, topP: 1, repetitionPenalty: 1, seed: 1, ...o });
const draw = (s: Sampler, logits: Float32Array, n: number, context: number[] = []): number[] => Array.from({ length: n }, () => s.sample(logits, context).id);
const counts = (ids: number[]): Map<number, number> => ids.reduce((m, id) => m.set(id, (m.get(id) ?? 0) + 1), new Map<number, number>());

describe('sampler', () => {
  const logits = logitsFrom([0.5, 0.3, 0.15, 0.05]);

  it('greedy takes the argmax and reports its log-probability under the model', () => {
    const s = new Sampler(V, GREEDY);
    const r = s.sample(logits, []);
    expect(r.id).toBe(0);
    expect(r.logprob).toBeCloseTo(Math.log(0.5), 5);
  });

  it('the same seed reproduces the same draws; another seed does not', () => {
    const a = draw(new Sampler(V, opts({ seed: 42 })), logits, 200);
    const b = draw(new Sampler(V, opts({ seed: 42 })), logits, 200);
    const c = draw(new Sampler(V, opts({ seed: 43 })), logits, 200);
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
  });

  it('temperature 1 samples the softmax', () => {
    const c = counts(draw(new Sampler(V, opts({ seed: 7 })), logits, 20000));
    expect(c.get(0)! / 20000).toBeCloseTo(0.5, 1);
    expect(c.get(7)! / 20000).toBeCloseTo(0.3, 1);
    expect(c.get(21)! / 20000).toBeCloseTo(0.05, 1);
    expect([...c.keys()].every((id) => [0, 7, 14, 21].includes(id))).toBe(true);
  });

  it('a temperature too small to sample from acts as greedy (1e-300 sampled token 0)', () => {
    // Logits of both signs, as a real model's are: logit / 1e-300 overflows float32 to ±Infinity.
    const real = new Float32Array(V).map((_, i) => 2 + 10 * Math.sin(i * 12.9898) + (i === 613 ? 40 : 0));
    const best = argmax(real, V);
    expect(best).toBe(613);
    for (const temperature of [1e-300, 5e-324, 1e-45, 1e-38, 1e-20, 1e-6]) {
      const s = new Sampler(V, opts({ temperature, seed: 11, topK: 40, topP: 0.95 }));
      const plain = new Sampler(V, opts({ temperature, seed: 12 }));
      for (let k = 0; k < 20; k++) {
        expect(s.sample(real, []).id, `temperature ${temperature}`).toBe(best);
        expect(plain.sample(real, []).id, `temperature ${temperature}`).toBe(best);
      }
    }
  });

  it('a low temperature sharpens, a high one flattens', () => {
    const cold = counts(draw(new Sampler(V, opts({ temperature: 0.25 })), logits, 5000));
    const hot = counts(draw(new Sampler(V, opts({ temperature: 4 })), logits, 5000));
    expect(cold.get(0)! / 5000).toBeGreaterThan(0.85);
    expect(hot.get(21)! / 5000).toBeGreaterThan(0.12);
  });

  it('top-k keeps only the k most likely tokens', () => {
    const c = counts(draw(new Sampler(V, opts({ topK: 2, seed: 3 })), logits, 5000));
    expect([...c.keys()].sort((a, b) => a - b)).toEqual([0, 7]);
    expect(c.get(0)! / 5000).toBeCloseTo(0.5 / 0.8, 1);
  });

  it('top-p keeps the smallest set reaching p', () => {
    const c = counts(draw(new Sampler(V, opts({ topP: 0.7, seed: 5 })), logits, 5000));
    expect([...c.keys()].sort((a, b) => a - b)).toEqual([0, 7]);
    const wide = counts(draw(new Sampler(V, opts({ topP: 0.9, seed: 5 })), logits, 5000));
    expect([...wide.keys()].sort((a, b) => a - b)).toEqual([0, 7, 14]);
  });

  it('top-p over a flat distribution grows its candidate set past the first batch', () => {
    const flat = new Float32Array(V); // uniform: p = 0.5 needs 500 tokens
    const c = counts(draw(new Sampler(V, opts({ topP: 0.5, seed: 9 })), flat, 4000));
    expect(c.size).toBeGreaterThan(400);
    expect(Math.max(...c.keys())).toBeLessThan(500);
  });

  it('the repetition penalty steers away from tokens already in the context', () => {
    const s = new Sampler(V, { ...GREEDY, repetitionPenalty: 2 });
    expect(s.sample(logitsFrom([0.5, 0.45]), []).id).toBe(0);
    // log 0.5 < 0, so the penalty multiplies it: token 0 drops below token 7.
    expect(s.sample(logitsFrom([0.5, 0.45]), [0, 0, 0]).id).toBe(7);
    const pos = new Float32Array(V).fill(-5);
    pos[1] = 3; pos[2] = 2;
    expect(s.sample(pos, [1]).id).toBe(2); // 3 / 2 = 1.5 < 2
  });

  it('rejects nonsense settings', () => {
    expect(() => new Sampler(V, opts({ temperature: -1 }))).toThrow(/temperature/);
    expect(() => new Sampler(V, opts({ topP: 0 }))).toThrow(/top-p/);
    expect(() => new Sampler(V, opts({ topK: 1.5 }))).toThrow(/top-k/);
    expect(() => new Sampler(V, opts({ repetitionPenalty: 0 }))).toThrow(/repetition/);
  });

  it('topIndices returns the k largest, best first, lower index on ties', () => {
    const x = new Float32Array([3, 9, 1, 9, 5, 7, 2]);
    const out = new Int32Array(4);
    topIndices(x, x.length, 4, out);
    expect(Array.from(out)).toEqual([1, 3, 5, 4]);
    expect(argmax(x, x.length)).toBe(1);
  });
});
