import type { EngineApi, GenerateRequest, GenerateResult, LoadProgress, LoadRequest, ModelInfo, TokenEvent } from './api.ts';
import type { GPT2Config } from './config.ts';
import { parseConfig } from './config.ts';
import type { Decoder } from './decoder.ts';
import { generate, Session } from './generate.ts';
import { createPoolDecoder, defaultWorkerCount } from './pool-decoder.ts';
import type { SpawnShard } from './pool-protocol.ts';
import { createReferenceDecoder } from './reference.ts';
import { planShards } from './shard-plan.ts';
import type { ByteSource } from './weights.ts';
import { blobSource, expectedTensors, loadWeights } from './weights.ts';
import { yieldToEventLoop } from './yield.ts';

// The engine behind the EngineApi: one loaded model, one session (so the KV cache of an unchanged
// conversation prefix is reused), one reply at a time. Runs in the engine worker in a browser and
// directly in Node tests; only plain data goes in and out.

export interface EngineHostDeps {
  /** Starts a shard worker; null when SharedArrayBuffer is unavailable (not cross-origin isolated). */
  spawn: SpawnShard | null;
  cores: number;
  openStored(modelId: string): Promise<{ name: string; config: GPT2Config; source: ByteSource }>;
}

export class EngineError extends Error {
  override readonly name = 'EngineError';
}

export function createEngineHost(deps: EngineHostDeps): EngineApi {
  let session: Session | null = null;
  let loading: Promise<unknown> | null = null;
  let reply: { controller: AbortController; reason: string | null; done: Promise<unknown> } | null = null;

  async function stopReply(reason: string): Promise<void> {
    if (!reply) return;
    reply.reason = reason;
    reply.controller.abort();
    await reply.done.catch(() => {});
  }

  async function open(request: LoadRequest, onProgress?: (p: LoadProgress) => void): Promise<ModelInfo> {
    const started = performance.now();
    const loc = request.location;
    const model = loc.kind === 'stored'
      ? await deps.openStored(loc.modelId)
      : { name: loc.name, config: parseConfig(loc.config), source: blobSource(loc.weights) };
    const { config, source } = model;
    const progress = onProgress && ((p: { bytesRead: number; bytesTotal: number }) => onProgress({ phase: 'reading', ...p }));
    let decoder: Decoder;
    if (request.workers === -1 || deps.spawn === null) {
      const weights = await loadWeights(config, source, planShards(config, 1), undefined, progress);
      // Not cross-origin isolated: no shared memory, so the whole model runs in this one worker.
      const kind = deps.spawn === null ? 'fallback' : 'reference';
      decoder = createReferenceDecoder(weights, 1, undefined, { kind, workers: 0, sync: 'none', sharedMemory: false });
    } else {
      const workers = request.workers > 0 ? request.workers : defaultWorkerCount(deps.cores);
      decoder = await createPoolDecoder(config, source, {
        workers, spawn: deps.spawn, onProgress: (p) => {
          progress?.(p);
          if (p.bytesRead === p.bytesTotal) onProgress?.({ phase: 'starting-workers', ...p });
        },
      });
    }
    let weightBytes = 0;
    for (const shape of expectedTensors(config).values()) weightBytes += 4 * shape.reduce((a, b) => a * b, 1);
    session = new Session(decoder);
    return { name: model.name, config, mode: { ...decoder.mode }, loadMs: performance.now() - started, weightBytes };
  }

  return {
    async load(request, onProgress) {
      await stopReply('the model was switched during the reply');
      await loading?.catch(() => {});
      const previous = session;
      session = null;
      await previous?.decoder.dispose();
      const p = open(request, onProgress);
      loading = p;
      try {
        return await p;
      } finally {
        if (loading === p) loading = null;
      }
    },

    async generate(request: GenerateRequest, onToken: (t: TokenEvent) => void, onTruncated?: (dropped: number, kept: number) => void): Promise<GenerateResult> {
      if (reply) throw new EngineError('a reply is already being generated; stop it first');
      if (!session) throw new EngineError('no model is loaded');
      const s = session;
      const controller = new AbortController();
      const me: { controller: AbortController; reason: string | null; done: Promise<unknown> } = { controller, reason: null, done: Promise.resolve() };
      const run = async (): Promise<GenerateResult> => {
        const it = generate(s, request.prompt, {
          maxTokens: request.maxTokens, sampler: request.sampler, signal: controller.signal,
          stopSequences: request.stopSequences, eosTokenId: request.eosTokenId, onPromptTruncated: onTruncated,
        });
        let r = await it.next();
        while (!r.done) {
          onToken({ ...r.value, position: s.decoder.position + 1 });
          await yieldToEventLoop();
          r = await it.next();
        }
        if (me.reason) throw new EngineError(me.reason);
        const summary = r.value;
        const tokensPerSecond = summary.generatedTokens > 1 && summary.decodeMs > 0 ? ((summary.generatedTokens - 1) * 1000) / summary.decodeMs : 0;
        return { ...summary, tokensPerSecond };
      };
      const done = run();
      me.done = done;
      reply = me;
      try {
        return await done;
      } finally {
        if (reply === me) reply = null;
      }
    },

    abort() {
      reply?.controller.abort();
    },

    async unload() {
      await stopReply('the model was unloaded during the reply');
      const previous = session;
      session = null;
      await previous?.decoder.dispose();
    },
  };
}
