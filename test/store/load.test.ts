import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReferenceDecoder } from '../../src/engine/reference.ts';
import { planShards } from '../../src/engine/shard-plan.ts';
import type { LoadedWeights } from '../../src/engine/weights.ts';
import { loadWeights } from '../../src/engine/weights.ts';
import { loadModel, readFixture, TINY } from '../helpers/fixtures.ts';
import type { RangeServer } from '../helpers/range-server.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import { harness, tinyBytes, tinyConfigText } from './helpers.ts';

// The store's ByteSource must be indistinguishable from the file on disk: same weights, same logits.

let srv: RangeServer;
beforeAll(async () => {
  srv = await startRangeServer();
  srv.files.set('/tiny/config.json', new TextEncoder().encode(tinyConfigText()));
  srv.files.set('/tiny/model.safetensors', tinyBytes());
});
afterAll(() => srv.close());

const same = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

async function logitsOf(weights: LoadedWeights, ids: number[], next: number[]): Promise<Float32Array[]> {
  const decoder = createReferenceDecoder(weights);
  const out = [(await decoder.step(ids)).slice()];
  for (const id of next) out.push((await decoder.step([id])).slice());
  await decoder.dispose();
  return out;
}

describe('openStoredModel feeding the engine', () => {
  // 4 MiB is the default; an odd size puts every chunk boundary mid-element.
  it.each([4 << 20, 1_000_003])('loads the same weights and logits as from disk (chunks of %i bytes)', async (chunkBytes) => {
    const store = await harness().open({ chunkBytes });
    const m = await store.download(store.customModel(`${srv.origin}/tiny/`, 'transcript'));
    const opened = await store.openStoredModel(m.id);
    const { prompt_ids: prompt, decode } = readFixture('tiny-logits').cases[0];
    const next = decode.slice(0, 3).map((d) => d.input_id);

    for (const shards of [1, 2]) {
      const fromStore = await loadWeights(opened.config, opened.source, planShards(opened.config, shards));
      const fromDisk = await loadModel(TINY, shards);
      expect(same(fromStore.common, fromDisk.common), `common, ${shards} shards`).toBe(true);
      fromDisk.shards.forEach((s, i) => expect(same(fromStore.shards[i], s), `shard ${i} of ${shards}`).toBe(true));
      if (shards > 1) continue;
      const got = await logitsOf(fromStore, prompt, next);
      const want = await logitsOf(fromDisk, prompt, next);
      got.forEach((g, i) => expect(same(g, want[i]), `logits of step ${i}`).toBe(true));
    }
  });
});
