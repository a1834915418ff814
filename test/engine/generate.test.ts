import { describe, expect, it } from 'vitest';
import type { GeneratedToken, GenerateOptions, GenerationSummary } from '../../src/engine/generate.ts';
import { fitPrompt, generate, Session } from '../../src/engine/generate.ts';
import { GREEDY } from '../../src/engine/sampler.ts';
import { decode, encode } from '../../src/engine/tokenizer.ts';
import { parseConfig } from '../../src/engine/config.ts';
import { createReferenceDecoder } from '../../src/engine/reference.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import { loadWeights } from '../../src/engine/weights.ts';
import { readFixture, referenceDecoder, relativeError } from '../helpers/fixtures.ts';
import { memorySource, tinyWithWindow } from '../helpers/model-bytes.ts';

async function run(session: Session, prompt: readonly number[], options: GenerateOptions): Promise<{ tokens: GeneratedToken[]; summary: GenerationSummary }> {
  const tokens: GeneratedToken[] = [];
  const it = generate(session, prompt, options);
  let r = await it.next();
  while (!r.done) {
    tokens.push(r.value);
    r = await it.next();
  }
  return { tokens, summary: r.value };
}

const sampling = (seed: number) => ({ temperature: 0.9, topK: 50, topP: 0.95, repetitionPenalty: 1.1, seed });

describe('generation', async () => {
  const fixture = readFixture('tiny-logits');
  const hello = fixture.cases.find((c) => c.name === 'hello')!;
  const session = new Session(await referenceDecoder());

  it('the same seed reproduces a sampled reply exactly; another seed gives another', async () => {
    const a = await run(session, hello.prompt_ids, { maxTokens: 30, sampler: sampling(11), eosTokenId: null });
    const b = await run(session, hello.prompt_ids, { maxTokens: 30, sampler: sampling(11), eosTokenId: null });
    const c = await run(session, hello.prompt_ids, { maxTokens: 30, sampler: sampling(12), eosTokenId: null });
    expect(a.tokens.map((t) => t.id)).toEqual(b.tokens.map((t) => t.id));
    expect(a.tokens.map((t) => t.logprob)).toEqual(b.tokens.map((t) => t.logprob));
    expect(c.tokens.map((t) => t.id)).not.toEqual(a.tokens.map((t) => t.id));
  });

  it('stops at the end-of-text token', async () => {
    const eos = hello.greedy_ids[3];
    const { tokens, summary } = await run(session, hello.prompt_ids, { maxTokens: 20, sampler: GREEDY, eosTokenId: eos });
    expect(tokens.map((t) => t.id)).toEqual(hello.greedy_ids.slice(0, 4));
    expect(tokens[3].text).toBe('');
    expect(summary.stopReason).toBe('eos');
  });

  it('stops at max tokens, and the text of the tokens is the decoded reply', async () => {
    const { tokens, summary } = await run(session, hello.prompt_ids, { maxTokens: 7, sampler: GREEDY, eosTokenId: null });
    expect(summary).toMatchObject({ stopReason: 'max-tokens', generatedTokens: 7, promptTokens: 5 });
    expect(tokens.map((t) => t.text).join('')).toBe(decode(hello.greedy_ids.slice(0, 7)));
  });

  it('stops when the context window is full', async () => {
    const prompt = Array.from({ length: 120 }, (_, i) => (i * 37) % 50000);
    const { tokens, summary } = await run(session, prompt, { maxTokens: 50, sampler: GREEDY, eosTokenId: null });
    // 120 prompt tokens fill positions 0..119; 8 fed tokens fill 120..127; the 9th cannot be fed.
    expect(tokens).toHaveLength(9);
    expect(summary.stopReason).toBe('context-full');
    expect(session.decoder.position).toBe(128);
  });

  it('a prompt longer than the window keeps its most recent tokens and says so', async () => {
    const prompt = Array.from({ length: 300 }, (_, i) => (i * 101) % 50000);
    let told: [number, number] | null = null;
    const { tokens, summary } = await run(session, prompt, {
      maxTokens: 4, sampler: GREEDY, eosTokenId: null, onPromptTruncated: (d, k) => (told = [d, k]),
    });
    const kept = fitPrompt(300, 128, 4);
    expect(told).toEqual([300 - kept, kept]);
    expect(summary.droppedTokens).toBe(300 - kept);
    const fresh = await run(new Session(await referenceDecoder()), prompt.slice(300 - kept), { maxTokens: 4, sampler: GREEDY, eosTokenId: null });
    expect(tokens.map((t) => t.id)).toEqual(fresh.tokens.map((t) => t.id));
  });

  it('keeps at least the last prompt token, however small the window', () => {
    expect(fitPrompt(5, 1, 64)).toBe(1);
    expect(fitPrompt(1, 1, 64)).toBe(1);
    expect(fitPrompt(9, 2, 64)).toBe(1);
    expect(fitPrompt(300, 128, 4)).toBe(124);
  });

  it('a model whose window is one token still answers a prompt with one token (it said "the prompt is empty")', async () => {
    const { configText, bytes } = tinyWithWindow(1);
    const config = parseConfig(configText);
    const one = new Session(createReferenceDecoder(await loadWeights(config, memorySource(bytes), planShards(config, 1))));
    let told: [number, number] | null = null;
    const { tokens, summary } = await run(one, hello.prompt_ids, { maxTokens: 8, sampler: GREEDY, eosTokenId: null, onPromptTruncated: (d, k) => (told = [d, k]) });
    expect(told).toEqual([hello.prompt_ids.length - 1, 1]);
    expect(tokens).toHaveLength(1);
    expect(summary).toMatchObject({ stopReason: 'context-full', promptTokens: 1, generatedTokens: 1 });
  });

  it('an AbortSignal stops the reply between tokens', async () => {
    const controller = new AbortController();
    const tokens: GeneratedToken[] = [];
    const it = generate(session, hello.prompt_ids, { maxTokens: 50, sampler: GREEDY, eosTokenId: null, signal: controller.signal });
    let r = await it.next();
    while (!r.done) {
      tokens.push(r.value);
      if (tokens.length === 3) controller.abort();
      r = await it.next();
    }
    expect(tokens).toHaveLength(3);
    expect(r.value.stopReason).toBe('aborted');
  });

  it('stop sequences end the reply and are not emitted', async () => {
    const full = await run(session, hello.prompt_ids, { maxTokens: 12, sampler: GREEDY, eosTokenId: null });
    const text = full.tokens.map((t) => t.text).join('');
    const stop = text.slice(10, 14);
    const cut = await run(session, hello.prompt_ids, { maxTokens: 12, sampler: GREEDY, eosTokenId: null, stopSequences: [stop] });
    expect(cut.summary.stopReason).toBe('stop-sequence');
    expect(cut.tokens.map((t) => t.text).join('')).toBe(text.slice(0, text.indexOf(stop)));
  });

  it('whitespace before the reply has said anything does not trigger a stop sequence', async () => {
    const full = await run(session, hello.prompt_ids, { maxTokens: 12, sampler: GREEDY, eosTokenId: null });
    const text = full.tokens.map((t) => t.text).join('');
    const firstWord = text.trim().slice(0, 2);
    // A stop sequence made of the reply's leading whitespace would end it empty; here it cannot.
    const lead = text.slice(0, text.search(/\S/));
    const stops = lead ? [lead] : [' '];
    const r = await run(session, hello.prompt_ids, { maxTokens: 12, sampler: GREEDY, eosTokenId: null, stopSequences: [...stops, firstWord] });
    expect(r.summary.stopReason).toBe('stop-sequence');
    expect(r.tokens.map((t) => t.text).join('')).toBe(text.slice(0, text.indexOf(firstWord)));
  });

  it('a prompt that extends the cached one reuses its KV cache and gives the same logits as a fresh prefill', async () => {
    const first = encode('The quick brown fox jumps over the lazy dog.');
    const second = [...first, ...encode(' And then it ran away into the forest.')];
    session.reset();
    await session.prefill(first);
    const { logits, reused } = await session.prefill(second);
    expect(reused).toBe(first.length);
    const freshDecoder = await referenceDecoder();
    const fresh = await freshDecoder.step(second);
    expect(relativeError(logits, fresh)).toBeLessThan(1e-5);
    // and the same prompt again reuses all but the last token
    expect((await session.prefill(second)).reused).toBe(second.length - 1);
  });

  it('rolling back and decoding again equals a fresh prefill', async () => {
    const ids = encode('Once upon a time there was a little model that could.');
    session.reset();
    await session.prefill(ids);
    for (const id of [11, 22, 33]) await session.step([id]);
    session.decoder.rollback(ids.length - 3);
    const again = await session.decoder.step(ids.slice(ids.length - 3));
    const fresh = await (await referenceDecoder()).step(ids);
    expect(relativeError(again, fresh)).toBeLessThan(1e-5);
  });

  it('rejects token ids outside the vocabulary without touching the cache', async () => {
    session.reset();
    await session.prefill([1, 2, 3]);
    await expect(session.decoder.step([50257])).rejects.toThrow(/vocabulary/);
    expect(session.decoder.position).toBe(3);
  });
});
