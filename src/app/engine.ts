// The page's one engine: an EngineApi backed by the Comlink-wrapped module worker
// (src/engine/client.ts → workers/engine.worker.ts), which runs the model on its worker pool.
export type { EngineClient } from '../engine/client.ts';
export { createEngine } from '../engine/client.ts';
