import type { EngineApi } from '../engine/api.ts';

// The page's one engine: an EngineApi backed by the Comlink-wrapped module worker
// (src/engine/client.ts → workers/engine.worker.ts), which runs the model on its worker pool.

export interface EngineClient extends EngineApi {
  /** crossOriginIsolated: the worker pool can share memory (SharedArrayBuffer). */
  readonly sharedMemory: boolean;
}

interface ClientModule {
  createEngine(): EngineClient;
}

// src/engine/client.ts is written by the engine team; until it lands the glob is empty and the
// app says so instead of failing to build.
const modules = import.meta.glob<ClientModule>('../engine/client.ts');

export async function createEngine(): Promise<EngineClient> {
  const load = modules['../engine/client.ts'];
  if (!load) throw new Error('This build has no engine client (src/engine/client.ts is missing).');
  const mod = await load();
  return mod.createEngine();
}
