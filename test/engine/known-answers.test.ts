import { describe, expect, it } from 'vitest';
import { generate, Session } from '../../src/engine/generate.ts';
import { GREEDY } from '../../src/engine/sampler.ts';
import { join } from 'node:path';
import { readFixture, referenceDecoder, relativeError, ROOT, TINY } from '../helpers/fixtures.ts';

// The engine against an independent PyTorch implementation (tools/reference_gpt2.py, float64):
// the tiny random test model, and the bundled Shakespeare model the app ships.

describe.each([
  ['the tiny test model', 'tiny-logits', TINY],
  ['the bundled Shakespeare model', 'shakespeare-logits', join(ROOT, 'public/models/shakespeare')],
])('reference engine matches PyTorch on %s', async (_name, fixtureName, dir) => {
  const fixture = readFixture(fixtureName);
  const decoder = await referenceDecoder(dir);

  for (const c of fixture.cases) {
    it(`${c.name}: prefill and ${c.decode.length} KV-cached decode steps within 1e-4`, async () => {
      decoder.rollback(0);
      const prefill = await decoder.step(c.prompt_ids);
      expect(decoder.position).toBe(c.prompt_ids.length);
      expect(relativeError(prefill, fixture.logits(c.prefill.offset))).toBeLessThan(1e-4);
      for (const s of c.decode) {
        expect(decoder.position).toBe(s.position);
        const logits = await decoder.step([s.input_id]);
        expect(relativeError(logits, fixture.logits(s.offset))).toBeLessThan(1e-4);
      }
    });

    it(`${c.name}: greedy continuation matches token for token`, async () => {
      const session = new Session(decoder);
      session.reset();
      const ids: number[] = [];
      for await (const t of generate(session, c.prompt_ids, { maxTokens: c.greedy_ids.length, sampler: GREEDY, eosTokenId: null })) ids.push(t.id);
      expect(ids).toEqual(c.greedy_ids);
    });
  }

  it('a wrong answer would be caught: perturbed logits exceed the tolerance', () => {
    const want = fixture.logits(fixture.cases[0].prefill.offset);
    const got = want.slice();
    got[123] += 1e-2 * Math.max(...Array.from(want, Math.abs));
    expect(relativeError(got, want)).toBeGreaterThan(1e-4);
  });
});
