// A shard worker: Comlink exposes the shard host to the coordinator.
// In a browser this file is a module Web Worker; in Node a worker_threads worker.
import * as Comlink from 'comlink';
import { createShardHost } from './shard-host.ts';

const host = createShardHost();
const isBrowserWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';

if (isBrowserWorker) {
  Comlink.expose(host);
} else {
  const [{ parentPort }, { default: nodeEndpoint }] = await Promise.all([
    import('node:worker_threads'),
    import('comlink/dist/esm/node-adapter.mjs'),
  ]);
  if (!parentPort) throw new Error('shard.worker must run as a worker thread');
  Comlink.expose(host, nodeEndpoint(parentPort));
}
