import { jsKernels } from '../src/engine/kernels.ts';
import { KVCache } from '../src/engine/kv-cache.ts';
import {
  CMD, CMD_ATTENTION, CMD_LOGITS, CMD_MLP, CMD_STOP, DONE, FAILED, FAULT, LAYER, POS, READY, ROWS, SEQ,
} from '../src/engine/pool-protocol.ts';
import type { ShardSetup, ShardWorkerApi } from '../src/engine/pool-protocol.ts';
import { Shard } from '../src/engine/shard.ts';

/**
 * The body of a shard worker, the same in a browser Web Worker and a Node worker thread:
 * it owns one shard (its heads' weights and KV cache) and runs the coordinator's per-layer commands.
 */
export function createShardHost(): ShardWorkerApi {
  let shard: Shard | null = null;
  let control: Int32Array | null = null;

  const ready = (): Shard => {
    if (shard === null) throw new Error('shard worker used before init');
    return shard;
  };

  return {
    init(setup: ShardSetup): number {
      const heads = setup.slice.heads[1] - setup.slice.heads[0];
      // The cache is this worker's own: a SharedArrayBuffer so a future kernel build can read it
      // from other threads, sized for the whole window so decoding never reallocates.
      const cache = new KVCache(setup.config, heads, (n) => new Float32Array(new SharedArrayBuffer(n * 4)));
      shard = new Shard(setup.config, setup.slice, setup.weights, setup.common, cache, {
        input: setup.input, partial: setup.partial, logits: setup.logits,
      }, jsKernels);
      control = setup.control;
      return cache.buffer.byteLength;
    },

    serve(): void {
      const s = ready();
      const c = control!;
      // The coordinator sends no command before every shard has said it is listening.
      let seen = Atomics.load(c, SEQ);
      Atomics.add(c, READY, 1);
      Atomics.notify(c, READY);
      for (;;) {
        Atomics.wait(c, SEQ, seen);
        seen = Atomics.load(c, SEQ);
        const cmd = Atomics.load(c, CMD);
        if (cmd === CMD_STOP) return;
        try {
          if (Atomics.compareExchange(c, FAULT, s.slice.index + 1, 0) === s.slice.index + 1) {
            throw new Error(`fault injected into shard ${s.slice.index}`);
          }
          if (cmd === CMD_ATTENTION) s.attention(Atomics.load(c, ROWS), Atomics.load(c, POS), Atomics.load(c, LAYER));
          else if (cmd === CMD_MLP) s.mlp(Atomics.load(c, ROWS), Atomics.load(c, LAYER));
          else if (cmd === CMD_LOGITS) s.logits();
        } catch (e) {
          Atomics.add(c, FAILED, 1);
          Atomics.add(c, DONE, 1);
          Atomics.notify(c, DONE);
          throw e;
        }
        Atomics.add(c, DONE, 1);
        Atomics.notify(c, DONE);
      }
    },

    attention(T, pos, layer) {
      ready().attention(T, pos, layer);
    },
    mlp(T, layer) {
      ready().mlp(T, layer);
    },
    logits() {
      ready().logits();
    },
  };
}
