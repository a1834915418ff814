import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { EngineApi, GenerateResult, TokenEvent } from '../../src/engine/api.ts';
import { createEngineHost } from '../../src/engine/engine-host.ts';
import { GREEDY } from '../../src/engine/sampler.ts';
import { encode } from '../../src/engine/tokenizer.ts';
import { spawnNodeShard } from '../../src/node/spawn-node.ts';
import { TINY } from '../helpers/fixtures.ts';

// The engine worker's logic, driven as the page drives it, on real shard workers.

const files = {
  kind: 'files' as const,
  name: 'tiny',
  config: readFileSync(join(TINY, 'config.json'), 'utf8'),
  weights: new Blob([readFileSync(join(TINY, 'model.safetensors'))]),
};
const prompt = encode('To be, or not to be, that is the question:');
const request = (maxTokens: number) => ({ prompt, maxTokens, sampler: GREEDY, eosTokenId: null });

let host: EngineApi | null = null;
afterEach(async () => {
  await host?.unload();
  host = null;
});

const make = (shared: boolean): EngineApi =>
  (host = createEngineHost({ spawn: shared ? spawnNodeShard : null, cores: 2, openStored: () => Promise.reject(new Error('no store here')) }));

async function collect(h: EngineApi, maxTokens: number): Promise<{ tokens: TokenEvent[]; result: GenerateResult }> {
  const tokens: TokenEvent[] = [];
  const result = await h.generate(request(maxTokens), (t) => tokens.push(t));
  return { tokens, result };
}

describe('engine host', () => {
  it('loads onto the pool with progress, streams tokens, and reuses the KV cache of a repeated prompt', async () => {
    const h = make(true);
    const phases = new Set<string>();
    const info = await h.load({ location: files, workers: 2 }, (p) => phases.add(p.phase));
    expect(info.mode).toMatchObject({ kind: 'pool', workers: 2, sync: 'atomics', sharedMemory: true });
    expect([...phases]).toEqual(['reading', 'starting-workers']);
    const first = await collect(h, 8);
    expect(first.tokens).toHaveLength(8);
    expect(first.tokens.map((t) => t.position)).toEqual(Array.from({ length: 8 }, (_, i) => prompt.length + i + 1));
    expect(first.result).toMatchObject({ stopReason: 'max-tokens', generatedTokens: 8, reusedTokens: 0 });
    const again = await collect(h, 8);
    expect(again.result.reusedTokens).toBe(prompt.length - 1);
    expect(again.tokens.map((t) => t.id)).toEqual(first.tokens.map((t) => t.id));
  });

  it('without shared memory runs the single-worker fallback and says so; same reply', async () => {
    const pool = make(true);
    await pool.load({ location: files, workers: 2 });
    const want = (await collect(pool, 6)).tokens.map((t) => t.id);
    await pool.unload();
    const h = make(false);
    const info = await h.load({ location: files, workers: 0 });
    expect(info.mode).toMatchObject({ kind: 'fallback', workers: 0, sharedMemory: false });
    expect((await collect(h, 6)).tokens.map((t) => t.id)).toEqual(want);
  });

  it('abort ends the reply within a token; the next request works', async () => {
    const h = make(true);
    await h.load({ location: files, workers: 2 });
    const tokens: TokenEvent[] = [];
    const result = await h.generate(request(100), (t) => {
      tokens.push(t);
      if (tokens.length === 3) h.abort();
    });
    expect(result.stopReason).toBe('aborted');
    expect(tokens.length).toBeLessThanOrEqual(4);
    expect((await collect(h, 5)).tokens).toHaveLength(5);
  });

  it('a model switch in the middle of a reply ends it with a clear error, and the new model answers', async () => {
    const h = make(true);
    await h.load({ location: files, workers: 2 });
    let switched: Promise<unknown> | null = null;
    const reply = h.generate(request(100), () => {
      switched ??= h.load({ location: files, workers: 1 });
    });
    await expect(reply).rejects.toThrow(/switched during the reply/);
    const info = (await switched!) as { mode: { workers: number } };
    expect(info.mode.workers).toBe(1);
    expect((await collect(h, 4)).tokens).toHaveLength(4);
  });

  it('refuses a second concurrent reply and a reply with no model', async () => {
    const h = make(true);
    await expect(h.generate(request(2), () => {})).rejects.toThrow(/no model is loaded/);
    await h.load({ location: files, workers: 1 });
    const first = h.generate(request(20), () => {});
    await expect(h.generate(request(2), () => {})).rejects.toThrow(/already being generated/);
    await first;
  });

  it('a bad weights file is a clear error and the engine stays usable', async () => {
    const h = make(true);
    const bad = { ...files, weights: new Blob([new Uint8Array(100)]) };
    await expect(h.load({ location: bad, workers: 2 })).rejects.toThrow(/header/);
    await h.load({ location: files, workers: 2 });
    expect((await collect(h, 3)).tokens).toHaveLength(3);
  });
});
