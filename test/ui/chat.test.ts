import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import type { ModelProvider } from '../../src/app/chat.ts';
import { ChatController, createChatState, SAVE_EVERY_MS } from '../../src/app/chat.ts';
import { ConversationDB } from '../../src/app/conversations.ts';
import type { EngineApi, GenerateRequest, GenerateResult, ModelInfo, TokenEvent } from '../../src/engine/api.ts';
import { decode, encode } from '../../src/engine/tokenizer.ts';

const INFO: ModelInfo = {
  name: 'fake',
  config: { nLayer: 1, nHead: 1, nEmbd: 4, nPositions: 256, vocabSize: 50257, layerNormEpsilon: 1e-5, eosTokenId: 50256 },
  mode: { kind: 'pool', workers: 2, sync: 'atomics', sharedMemory: true },
  loadMs: 1,
  weightBytes: 0,
};

/** Replies with a fixed text, one token every `delayMs`, remembering its cache like the real engine. */
class FakeEngine implements EngineApi {
  requests: GenerateRequest[] = [];
  private cached: number[] = [];
  private aborted = false;
  constructor(public reply = 'Good morrow, sweet prince.', public delayMs = 5) {}
  async load(): Promise<ModelInfo> {
    return INFO;
  }
  async generate(req: GenerateRequest, onToken: (t: TokenEvent) => void): Promise<GenerateResult> {
    this.requests.push(req);
    this.aborted = false;
    let reused = 0;
    while (reused < Math.min(this.cached.length, req.prompt.length - 1) && this.cached[reused] === req.prompt[reused]) reused++;
    const ids = encode(this.reply);
    let n = 0;
    let stopReason: GenerateResult['stopReason'] = 'eos';
    for (const id of ids) {
      await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.aborted) {
        stopReason = 'aborted';
        break;
      }
      n++;
      onToken({ id, text: decode([id]), logprob: -1, position: req.prompt.length + n });
    }
    this.cached = [...req.prompt, ...ids.slice(0, n)];
    return { stopReason, promptTokens: req.prompt.length, droppedTokens: 0, reusedTokens: reused, generatedTokens: n, prefillMs: 3, decodeMs: 10, tokensPerSecond: 100 };
  }
  abort(): void {
    this.aborted = true;
  }
  async unload(): Promise<void> {}
}

const models: ModelProvider = {
  defaultModelId: () => 'shakespeare',
  ensureLoaded: async () => INFO,
  templateOf: () => 'play-script',
};

let n = 0;
async function setup(engine = new FakeEngine()) {
  const name = `test-chat-${process.pid}-${n++}`;
  const db = await ConversationDB.open(name);
  const state = createChatState();
  const chat = new ChatController(state, db, engine, models);
  await chat.init();
  return { name, db, state, chat, engine };
}

describe('chat controller', () => {
  it('streams a reply token by token and saves both messages', async () => {
    const { db, state, chat, engine } = await setup();
    const seen: string[] = [];
    const sending = chat.send('What news?');
    const poll = setInterval(() => seen.push(state.messages.at(-1)?.text ?? ''), 2);
    await sending;
    clearInterval(poll);
    expect(state.messages.map((m) => [m.role, m.text, m.status])).toEqual([
      ['user', 'What news?', 'done'],
      ['assistant', 'Good morrow, sweet prince.', 'done'],
    ]);
    expect(new Set(seen.filter((s) => s.length > 0 && s !== 'What news?')).size).toBeGreaterThan(2);
    expect(decode(engine.requests[0].prompt)).toBe('ROMEO:\nWhat news?\n\nJULIET:\n');
    expect(engine.requests[0].stopSequences).toContain('\n\n');
    const c = state.current!;
    expect(c.title).toBe('What news?');
    expect(state.conversations.map((x) => x.id)).toEqual([c.id]);
    expect((await db.messages(c.id)).map((m) => m.text)).toEqual(['What news?', 'Good morrow, sweet prince.']);
    expect(state.messages[1].stats).toMatchObject({ generatedTokens: encode('Good morrow, sweet prince.').length, window: 256, mode: expect.stringContaining('2 workers') });
  });

  it('reuses the previous prompt and reply as the next prompt prefix', async () => {
    // A leading space, as the model writes after "JULIET:\n": trimmed on screen, kept in the ids.
    const { state, chat, engine } = await setup(new FakeEngine(' Good morrow, sweet prince.'));
    await chat.send('What news?');
    expect(state.messages[1].text).toBe('Good morrow, sweet prince.');
    await chat.send('And then?');
    const [a, b] = engine.requests;
    const cached = [...a.prompt, ...encode(' Good morrow, sweet prince.')];
    expect(b.prompt.slice(0, cached.length)).toEqual(cached);
    expect(state.messages[3].stats!.reusedTokens).toBe(cached.length);
    expect(state.live?.reusedTokens).toBe(cached.length);
  });

  it('stop keeps the partial reply marked stopped, and saves it while it streams', async () => {
    const engine = new FakeEngine('one two three four five six seven eight nine ten '.repeat(5).trim(), 40);
    const { name, db, state, chat } = await setup(engine);
    const sending = chat.send('Count');
    await new Promise((r) => setTimeout(r, 40 * 6 + SAVE_EVERY_MS));
    // Saved while streaming (throttled), before it ends.
    const mid = await db.messages(state.current!.id);
    expect(mid[1]?.status).toBe('streaming');
    expect(mid[1]?.text.length).toBeGreaterThan(0);
    // A crash now: a fresh open marks it stopped and keeps the text.
    const other = await ConversationDB.open(name);
    const after = await other.messages(state.current!.id);
    expect(after[1].status).toBe('stopped');
    expect(after[1].text).toBe(mid[1].text);
    other.close();
    chat.stop();
    await sending;
    const m = state.messages[1];
    expect(m.status).toBe('stopped');
    expect(m.text.length).toBeGreaterThan(0);
    expect(m.text.length).toBeLessThan(engine.reply.length);
    expect((await db.messages(state.current!.id))[1]).toMatchObject({ status: 'stopped', text: m.text });
  });

  it('regenerates the last reply and edits-and-resends the last message', async () => {
    const { db, state, chat, engine } = await setup();
    await chat.send('First');
    engine.reply = 'Another reply.';
    await chat.regenerate();
    expect(state.messages.map((m) => m.text)).toEqual(['First', 'Another reply.']);
    expect(engine.requests[1].prompt).toEqual(engine.requests[0].prompt);
    engine.reply = 'Edited reply.';
    await chat.editLast('First, edited');
    expect(state.messages.map((m) => m.text)).toEqual(['First, edited', 'Edited reply.']);
    expect((await db.messages(state.current!.id)).map((m) => m.text)).toEqual(['First, edited', 'Edited reply.']);
  });

  it('keeps several conversations: new, rename, select, delete', async () => {
    const { db, state, chat } = await setup();
    await chat.send('In the first');
    const first = state.current!.id;
    await chat.newConversation();
    expect(state.messages).toEqual([]);
    await chat.send('In the second');
    const second = state.current!.id;
    expect(state.conversations.map((c) => c.id)).toEqual([second, first]);
    await chat.rename(first, 'Renamed');
    expect((await db.getConversation(first))!.title).toBe('Renamed');
    await chat.select(first);
    expect(state.messages[0].text).toBe('In the first');
    await chat.remove(first);
    expect(state.current!.id).toBe(second);
    expect((await db.listConversations()).map((c) => c.id)).toEqual([second]);
  });

  it('says when older turns no longer fit the window', async () => {
    const engine = new FakeEngine('word '.repeat(30).trim(), 0);
    const { state, chat } = await setup(engine);
    await chat.updateSettings({ maxNewTokens: 64 });
    for (let i = 0; i < 6; i++) await chat.send(`Message ${i} ${'and more '.repeat(10)}`);
    expect(state.current!.contextStart).toBeGreaterThan(0);
    expect(state.live!.contextNote).toMatch(/earlier messages? no longer fit/);
    expect(engine.requests.at(-1)!.prompt.length).toBeLessThanOrEqual(256 - 64);
  });

  it('reports a model that cannot load as an error on the reply', async () => {
    const name = `test-chat-${process.pid}-${n++}`;
    const db = await ConversationDB.open(name);
    const state = createChatState();
    const failing: ModelProvider = { ...models, ensureLoaded: async () => { throw new Error('model.safetensors: truncated'); } };
    const chat = new ChatController(state, db, new FakeEngine(), failing);
    await chat.init();
    await chat.send('Hi');
    expect(state.messages[1]).toMatchObject({ status: 'error', error: 'model.safetensors: truncated' });
    expect(state.error).toBeNull();
    expect(state.busy).toBe('idle');
  });

  it('exports and imports through JSON text', async () => {
    const { chat, state } = await setup();
    await chat.send('Keep me');
    const json = await chat.exportJson();
    const other = await setup();
    expect(await other.chat.importJson(json)).toBe(1);
    expect(other.state.conversations.map((c) => c.title)).toContain('Keep me');
    await expect(other.chat.importJson('{nope')).rejects.toThrow(/not valid JSON/);
    expect(state.conversations).toHaveLength(1);
  });
});
