import { jsKernels } from '../src/engine/kernels.ts';
import { KVCache } from '../src/engine/kv-cache.ts';
import {
  acknowledge, CMD, CMD_ATTENTION, CMD_LOGITS, CMD_MLP, CMD_STOP, LAYER, nextCommand, POS, READY, ROWS, SEQ,
} from '../src/engine/pool-protocol.ts';
import type { ShardSetup, ShardWorkerApi } from '../src/engine/pool-protocol.ts';
import { Shard } from '../src/engine/shard.ts';

/** What a shard worker runs for each command: the real Shard, or a test's wrapper around it. */
export type ShardSteps = Pick<Shard, 'attention' | 'mlp' | 'logits'>;

/** Builds the shard over the shared buffers, with its own KV cache sized for the whole window. */
export function buildShard(setup: ShardSetup): Shard {
  const heads = setup.slice.heads[1] - setup.slice.heads[0];
  const cache = new KVCache(setup.config, heads, (n) => new Float32Array(new SharedArrayBuffer(n * 4)));
  return new Shard(setup.config, setup.slice, setup.weights, setup.common, cache, {
    input: setup.input, partial: setup.partial, logits: setup.logits,
  }, jsKernels);
}

/**
 * The body of a shard worker, the same in a browser Web Worker and a Node worker thread:
 * it owns one shard (its heads' weights and KV cache) and runs the coordinator's per-layer commands.
 */
export function createShardHost(build: (setup: ShardSetup) => ShardSteps = buildShard): ShardWorkerApi {
  let shard: ShardSteps | null = null;
  let index = 0;
  let control: Int32Array | null = null;

  const ready = (): ShardSteps => {
    if (shard === null) throw new Error('shard worker used before init');
    return shard;
  };

  return {
    init(setup: ShardSetup): void {
      shard = build(setup);
      index = setup.slice.index;
      control = setup.control;
    },

    serve(): void {
      const s = ready();
      const c = control!;
      // The coordinator sends no command before every shard has said it is listening.
      let seen = Atomics.load(c, SEQ);
      Atomics.add(c, READY, 1);
      Atomics.notify(c, READY);
      for (;;) {
        seen = nextCommand(c, seen);
        const cmd = Atomics.load(c, CMD);
        if (cmd === CMD_STOP) return;
        try {
          if (cmd === CMD_ATTENTION) s.attention(Atomics.load(c, ROWS), Atomics.load(c, POS), Atomics.load(c, LAYER));
          else if (cmd === CMD_MLP) s.mlp(Atomics.load(c, ROWS), Atomics.load(c, LAYER));
          else if (cmd === CMD_LOGITS) s.logits();
        } catch (e) {
          acknowledge(c, index, seen, false);
          throw e;
        }
        acknowledge(c, index, seen, true);
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
