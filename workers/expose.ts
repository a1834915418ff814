import * as Comlink from 'comlink';
import type { ShardWorkerApi } from '../src/engine/pool-protocol.ts';

/** Exposes a shard host to its coordinator: on the worker's own scope in a browser, on parentPort in Node. */
export async function exposeShardHost(host: ShardWorkerApi): Promise<void> {
  const isBrowserWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';
  if (isBrowserWorker) {
    Comlink.expose(host);
    return;
  }
  const [{ parentPort }, { default: nodeEndpoint }] = await Promise.all([
    import('node:worker_threads'),
    import('comlink/dist/esm/node-adapter.mjs'),
  ]);
  if (!parentPort) throw new Error('a shard worker must run as a worker thread');
  Comlink.expose(host, nodeEndpoint(parentPort));
}
