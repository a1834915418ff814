// A test-only shard worker: the real shard host over the real Shard, except that one shard
// fails at a chosen command, as a bug in a kernel, an endless loop or a crash would.
import { workerData } from 'node:worker_threads';
import { exposeShardHost } from '../../workers/expose.ts';
import { buildShard, createShardHost } from '../../workers/shard-host.ts';

export interface Fault {
  shard: number;
  /** Commands the shard runs normally before the fault. */
  after: number;
  kind: 'throw' | 'hang' | 'exit';
  /** [faults left]: shared by every worker the spawner starts, so a restarted pool is healthy. */
  armed: Int32Array;
}

const fault = (workerData as { fault: Fault }).fault;

await exposeShardHost(createShardHost((setup) => {
  const shard = buildShard(setup);
  if (setup.slice.index !== fault.shard) return shard;
  let commands = 0;
  const trip = (): void => {
    if (commands++ < fault.after || Atomics.sub(fault.armed, 0, 1) <= 0) return;
    if (fault.kind === 'throw') throw new Error(`fault injected into shard ${fault.shard}`);
    if (fault.kind === 'exit') process.exit(3);
    for (;;); // hang: only terminating the worker ends this
  };
  return {
    attention(T, pos, layer) {
      trip();
      shard.attention(T, pos, layer);
    },
    mlp(T, layer) {
      trip();
      shard.mlp(T, layer);
    },
    logits() {
      trip();
      shard.logits();
    },
  };
}));
