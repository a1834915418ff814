// The engine worker: the coordinator and the generation loop run here, off the page's thread,
// and drive the shard workers. The page talks to it through Comlink (src/engine/client.ts).
import * as Comlink from 'comlink';
import { createEngineHost } from '../src/engine/engine-host.ts';
import { spawnBrowserShard } from '../src/engine/spawn-browser.ts';
import { openStoredModel } from '../src/store/index.ts';

const host = createEngineHost({
  // Without cross-origin isolation there is no SharedArrayBuffer: run the fallback in this worker.
  spawn: globalThis.crossOriginIsolated === true ? spawnBrowserShard : null,
  cores: navigator.hardwareConcurrency || 2,
  openStored: openStoredModel,
});

Comlink.expose(host);
