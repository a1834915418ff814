// A shard worker: Comlink exposes the shard host to the coordinator.
// In a browser this file is a module Web Worker; in Node a worker_threads worker.
import { createShardHost } from './shard-host.ts';
import { exposeShardHost } from './expose.ts';

await exposeShardHost(createShardHost());
