import * as Comlink from 'comlink';
import type { EngineApi } from './api.ts';

// The page's handle on the engine: every call crosses to workers/engine.worker.ts through Comlink.
// Callbacks (progress, tokens) are passed as Comlink proxies so the worker can stream to the page.

export interface EngineClient extends EngineApi {
  /** crossOriginIsolated: the worker pool can share memory (SharedArrayBuffer). */
  readonly sharedMemory: boolean;
  /** Kills the engine worker (and with it the shard workers). */
  terminate(): void;
}

export function createEngine(): EngineClient {
  const worker = new Worker(new URL('../../workers/engine.worker.ts', import.meta.url), { type: 'module', name: 'engine' });
  const remote = Comlink.wrap<EngineApi>(worker);
  return {
    sharedMemory: globalThis.crossOriginIsolated === true,
    load: (request, onProgress) => remote.load(request, onProgress && Comlink.proxy(onProgress)),
    generate: (request, onToken, onTruncated) => remote.generate(request, Comlink.proxy(onToken), onTruncated && Comlink.proxy(onTruncated)),
    abort: () => void remote.abort(),
    unload: () => remote.unload(),
    terminate: () => {
      remote[Comlink.releaseProxy]();
      worker.terminate();
    },
  };
}
