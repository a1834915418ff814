import type { EngineApi, GenerateResult, ModelInfo, TokenEvent } from '../engine/api.ts';
import type { ChatMessage, Conversation, ConversationDB, ReplyStats } from './conversations.ts';
import { newConversation, newId, titleFrom } from './conversations.ts';
import type { ChatSettings } from './settings.ts';
import { defaultSettings, randomSeed, samplerOptions, validateSettings } from './settings.ts';
import type { RenderedPrompt, Turn } from './templates.ts';
import { decode } from '../engine/tokenizer.ts';
import { cleanReply, renderPrompt, replyIds } from './templates.ts';

// The chat controller: where a message goes from the composer to the engine and back.
//
//   Composer.svelte ──send(text)──▶ ChatController.send ──renderPrompt──▶ engine.generate(ids)
//        ▲                                                                   │ onToken(t)
//   Message.svelte ◀── state.messages[i].text += t.text ◀────────────────────┘
//
// `state` is whatever object the caller hands in: the UI passes a Svelte `$state` proxy, so every
// mutation below re-renders what depends on it; the unit tests pass a plain object. Each change
// is saved to IndexedDB: user messages at once, a streaming reply at most every SAVE_EVERY_MS,
// and the final reply when it ends (a crash mid-reply leaves it saved and marked stopped).

export const SAVE_EVERY_MS = 400;

/** What the stats bar shows while a reply streams and after it ends. */
export interface LiveStats {
  phase: 'loading' | 'prefill' | 'decode' | 'done';
  startedAt: number;
  firstTokenAt: number | null;
  tokens: number;
  /** Tokens in the window (prompt + reply so far) and the window's size. */
  position: number;
  window: number;
  promptTokens: number;
  reusedTokens: number | null;
  tokensPerSecond: number | null;
  timeToFirstTokenMs: number | null;
  mode: string;
  /** e.g. "2 older messages no longer fit the model's window and were left out". */
  contextNote: string | null;
}

export interface ChatState {
  conversations: Conversation[];
  current: Conversation | null;
  messages: ChatMessage[];
  busy: 'idle' | 'loading' | 'generating';
  live: LiveStats | null;
  error: string | null;
}

/** Loads models on demand (src/app/models.ts, on top of the model store). */
export interface ModelProvider {
  /** The model a conversation with `modelId` null talks to. */
  defaultModelId(): string | null;
  /** Makes `modelId` the engine's model, loading it with `workers` if it is not already. */
  ensureLoaded(modelId: string, workers: number): Promise<ModelInfo>;
  /** The template a model declares, for new conversations. */
  templateOf(modelId: string): ChatSettings['template'] | null;
}

export function createChatState(): ChatState {
  return { conversations: [], current: null, messages: [], busy: 'idle', live: null, error: null };
}

/** "pool · 2 workers · SharedArrayBuffer" */
export function describeMode(info: Pick<ModelInfo, 'mode'>): string {
  const m = info.mode;
  if (m.kind === 'reference') return 'single-thread reference';
  const workers = `${m.workers} worker${m.workers === 1 ? '' : 's'}`;
  if (m.kind === 'pool') return `SharedArrayBuffer pool · ${workers} · ${m.sync}`;
  return `fallback (no SharedArrayBuffer) · ${workers} · ${m.sync}`;
}

export class ChatController {
  private saveTimer: ReturnType<typeof setTimeout> | null = null;
  private lastSave = 0;
  private generation: Promise<void> | null = null;

  constructor(
    readonly state: ChatState,
    private readonly db: ConversationDB,
    private readonly engine: EngineApi,
    private readonly models: ModelProvider,
  ) {}

  /** Loads the sidebar and opens the most recent conversation (or a new one). */
  async init(): Promise<void> {
    this.state.conversations = await this.db.listConversations();
    const first = this.state.conversations[0];
    if (first) await this.select(first.id);
    else await this.newConversation();
  }

  private get current(): Conversation {
    const c = this.state.current;
    if (c === null) throw new Error('no conversation is open');
    return c;
  }

  async newConversation(): Promise<Conversation> {
    await this.stopAndWait();
    const modelId = this.models.defaultModelId();
    const template = (modelId && this.models.templateOf(modelId)) || 'play-script';
    const c = newConversation(defaultSettings(template, modelId));
    // Not saved until its first message: empty chats do not pile up in the sidebar.
    this.state.current = c;
    this.state.messages = [];
    this.state.live = null;
    this.state.error = null;
    return c;
  }

  async select(id: string): Promise<void> {
    if (this.state.current?.id === id) return;
    await this.stopAndWait();
    const c = this.state.conversations.find((x) => x.id === id) ?? (await this.db.getConversation(id));
    if (!c) throw new Error(`no conversation ${id}`);
    this.state.current = { ...c, settings: { ...c.settings } };
    this.state.messages = await this.db.messages(id);
    this.state.live = null;
    this.state.error = null;
  }

  async rename(id: string, title: string): Promise<void> {
    const t = title.trim().slice(0, 200);
    if (t.length === 0) return;
    const c = this.state.conversations.find((x) => x.id === id);
    if (!c) return;
    c.title = t;
    c.titleEdited = true;
    if (this.state.current?.id === id) Object.assign(this.state.current, { title: t, titleEdited: true });
    await this.db.putConversation(c);
  }

  async remove(id: string): Promise<void> {
    if (this.state.current?.id === id) await this.stopAndWait();
    await this.db.deleteConversation(id);
    this.state.conversations = this.state.conversations.filter((x) => x.id !== id);
    if (this.state.current?.id === id) {
      const next = this.state.conversations[0];
      this.state.current = null;
      if (next) await this.select(next.id);
      else await this.newConversation();
    }
  }

  /** Changes the open conversation's settings (saved if it has messages). */
  async updateSettings(patch: Partial<ChatSettings>): Promise<string[]> {
    const c = this.current;
    const next = { ...c.settings, ...patch };
    const errors = validateSettings(next);
    if (errors.length > 0) return errors;
    // Another model has another window: let the prompt start over from the oldest message.
    if (patch.modelId !== undefined && patch.modelId !== c.settings.modelId) c.contextStart = 0;
    c.settings = next;
    await this.persistConversation();
    return [];
  }

  private async persistConversation(): Promise<void> {
    const c = this.current;
    if (this.state.messages.length === 0) return;
    await this.db.putConversation(c);
    const i = this.state.conversations.findIndex((x) => x.id === c.id);
    const copy = { ...c, settings: { ...c.settings } };
    if (i >= 0) this.state.conversations[i] = copy;
    else this.state.conversations.unshift(copy);
  }

  private touch(): void {
    const c = this.current;
    c.updatedAt = Date.now();
    const i = this.state.conversations.findIndex((x) => x.id === c.id);
    const copy = { ...c, settings: { ...c.settings } };
    if (i >= 0) this.state.conversations.splice(i, 1);
    this.state.conversations.unshift(copy);
  }

  /** Sends the user's message and streams the reply. */
  async send(text: string): Promise<void> {
    if (text.trim().length === 0 || this.state.busy !== 'idle') return;
    const c = this.current;
    this.dropTrailingErrors();
    const m: ChatMessage = {
      id: newId(),
      conversationId: c.id,
      seq: this.nextSeq(),
      role: 'user',
      text: c.settings.mode === 'completion' ? text : text.trim(),
      createdAt: Date.now(),
      status: 'done',
    };
    if (!c.titleEdited && !this.state.messages.some((x) => x.role === 'user')) c.title = titleFrom(text);
    this.state.messages.push(m);
    this.touch();
    await this.db.saveMessage(m, c);
    await this.reply();
  }

  /** Replaces the last reply with a new one. */
  async regenerate(): Promise<void> {
    if (this.state.busy !== 'idle') return;
    const last = this.state.messages.at(-1);
    if (!last) return;
    if (last.role === 'assistant') {
      this.state.messages.pop();
      await this.db.deleteMessages([last.id]);
    }
    if (this.state.messages.length === 0) return;
    await this.reply();
  }

  /** Changes the last user message, drops what came after it and asks again. */
  async editLast(text: string): Promise<void> {
    if (this.state.busy !== 'idle' || text.trim().length === 0) return;
    const msgs = this.state.messages;
    let i = msgs.length - 1;
    while (i >= 0 && msgs[i].role !== 'user') i--;
    if (i < 0) return;
    const removed = msgs.splice(i + 1);
    if (removed.length > 0) await this.db.deleteMessages(removed.map((r) => r.id));
    const m = msgs[i];
    m.text = this.current.settings.mode === 'completion' ? text : text.trim();
    m.createdAt = Date.now();
    if (!this.current.titleEdited && i === msgs.findIndex((x) => x.role === 'user')) this.current.title = titleFrom(text);
    this.touch();
    await this.db.saveMessage(m, this.current);
    await this.reply();
  }

  /** Stops the reply in progress; what was generated so far is kept, marked stopped. */
  stop(): void {
    if (this.state.busy === 'generating' || this.state.busy === 'loading') this.engine.abort();
    this.stopRequested = true;
  }

  private stopRequested = false;

  private async stopAndWait(): Promise<void> {
    if (this.generation) {
      this.stop();
      await this.generation.catch(() => undefined);
    }
  }

  /** Resolves when the reply in progress (if any) has ended and been saved. */
  async idle(): Promise<void> {
    await this.generation?.catch(() => undefined);
  }

  private nextSeq(): number {
    const last = this.state.messages.at(-1);
    return last ? last.seq + 1 : 0;
  }

  private dropTrailingErrors(): void {
    const msgs = this.state.messages;
    const gone: string[] = [];
    while (msgs.length > 0 && msgs[msgs.length - 1].status === 'error' && msgs[msgs.length - 1].text === '') gone.push(msgs.pop()!.id);
    if (gone.length > 0) void this.db.deleteMessages(gone);
  }

  private reply(): Promise<void> {
    const run = this.runReply();
    this.generation = run;
    return run.finally(() => {
      if (this.generation === run) this.generation = null;
    });
  }

  private async runReply(): Promise<void> {
    const c = this.current;
    const settings = { ...c.settings };
    this.state.error = null;
    this.stopRequested = false;
    const seed = settings.seed ?? randomSeed();
    const reply: ChatMessage = {
      id: newId(),
      conversationId: c.id,
      seq: this.nextSeq(),
      role: 'assistant',
      text: '',
      createdAt: Date.now(),
      status: 'streaming',
    };
    this.state.messages.push(reply);
    // With a Svelte $state array the pushed object is wrapped in a proxy: mutate that one.
    const msg = this.state.messages[this.state.messages.length - 1];
    const live: LiveStats = {
      phase: 'loading', startedAt: performance.now(), firstTokenAt: null, tokens: 0, position: 0, window: 0,
      promptTokens: 0, reusedTokens: null, tokensPerSecond: null, timeToFirstTokenMs: null, mode: '', contextNote: null,
    };
    this.state.live = live;
    const stats = this.state.live;
    this.state.busy = 'loading';
    try {
      const modelId = settings.modelId ?? this.models.defaultModelId();
      if (modelId === null) throw new Error('No model is installed yet: download or import one under Models.');
      const info = await this.models.ensureLoaded(modelId, settings.workers);
      if (this.stopRequested) {
        msg.status = 'stopped';
        return;
      }
      const window = info.config.nPositions;
      const prompt = this.render(settings, window, info.config.eosTokenId);
      stats.mode = describeMode(info);
      stats.window = window;
      stats.promptTokens = prompt.ids.length;
      stats.position = prompt.ids.length;
      stats.contextNote = this.contextNote(prompt);
      stats.phase = 'prefill';
      stats.startedAt = performance.now();
      this.state.busy = 'generating';
      let raw = '';
      const generated: number[] = [];
      const onToken = (t: TokenEvent): void => {
        generated.push(t.id);
        const now = performance.now();
        if (stats.firstTokenAt === null) {
          stats.firstTokenAt = now;
          stats.timeToFirstTokenMs = now - stats.startedAt;
          stats.phase = 'decode';
        }
        stats.tokens++;
        stats.position = t.position;
        if (stats.tokens > 1) stats.tokensPerSecond = ((stats.tokens - 1) * 1000) / Math.max(1, now - stats.firstTokenAt);
        if (t.text) {
          raw += t.text;
          // Chat replies start after "NAME:\n" or "Assistant:": no leading whitespace on screen.
          msg.text = settings.mode === 'completion' ? raw : raw.trimStart();
          this.scheduleSave(msg);
        }
      };
      const onTruncated = (dropped: number): void => {
        stats.contextNote = `The engine cut ${dropped} more tokens from the start of the prompt to fit the window.`;
      };
      const result = await this.engine.generate(
        {
          prompt: prompt.ids,
          maxTokens: prompt.replyBudget,
          sampler: samplerOptions(settings, seed),
          stopSequences: prompt.stopSequences,
          eosTokenId: prompt.eosTokenId,
        },
        onToken,
        onTruncated,
      );
      msg.text = cleanReply(raw, settings.mode);
      // Ids of the untrimmed reply: the next prompt renders them, so the cache covers all of it.
      msg.ids = replyIds(generated, raw, prompt.eosTokenId, decode);
      msg.status = result.stopReason === 'aborted' ? 'stopped' : 'done';
      msg.stats = this.replyStats(info, modelId, prompt, result, stats, seed);
      stats.phase = 'done';
      stats.reusedTokens = result.reusedTokens;
      stats.tokensPerSecond = result.generatedTokens > 1 ? result.tokensPerSecond : stats.tokensPerSecond;
      stats.timeToFirstTokenMs = result.prefillMs;
      stats.promptTokens = result.promptTokens;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      // The reply shows its own error (state.error is for failures outside a reply).
      msg.status = msg.text.length > 0 ? 'stopped' : 'error';
      msg.error = message;
      stats.phase = 'done';
    } finally {
      this.state.busy = 'idle';
      this.cancelSave();
      await this.saveMessage(msg);
    }
  }

  /** Renders the prompt from the messages still in the context, and moves `contextStart` on when some no longer fit. */
  private render(settings: ChatSettings, window: number, eosTokenId: number): RenderedPrompt {
    const c = this.current;
    // An empty reply stays in the prompt when its ids are known: it is what the model said.
    const history = this.state.messages.slice(0, -1).filter((m) => m.status !== 'error' && (m.text.length > 0 || m.ids !== undefined));
    const turns: Turn[] = history.map((m) => (m.ids ? { role: m.role, text: m.text, ids: m.ids } : { role: m.role, text: m.text }));
    let first = history.findIndex((m) => m.seq >= c.contextStart);
    if (first < 0) first = Math.max(0, history.length - 1);
    const prompt = renderPrompt({ turns, settings, window, firstTurn: first, eosTokenId });
    const start = history[prompt.firstTurn]?.seq ?? 0;
    if (start !== c.contextStart) c.contextStart = start;
    return prompt;
  }

  private contextNote(p: RenderedPrompt): string | null {
    const c = this.current;
    const left = this.state.messages.filter((m) => m.seq < c.contextStart && m.text.length > 0).length;
    const parts: string[] = [];
    if (left > 0) parts.push(`${left} earlier message${left === 1 ? '' : 's'} no longer fit the model's window and ${left === 1 ? 'is' : 'are'} left out of the prompt.`);
    if (p.truncatedTokens > 0) parts.push(`The message was cut by ${p.truncatedTokens} tokens from its start to fit.`);
    return parts.length > 0 ? parts.join(' ') : null;
  }

  private replyStats(info: ModelInfo, modelId: string, p: RenderedPrompt, r: GenerateResult, live: LiveStats, seed: number): ReplyStats {
    return {
      model: info.name || modelId,
      mode: describeMode(info),
      window: info.config.nPositions,
      promptTokens: r.promptTokens,
      reusedTokens: r.reusedTokens,
      generatedTokens: r.generatedTokens,
      droppedTurns: this.state.messages.filter((m) => m.seq < this.current.contextStart && m.text.length > 0).length,
      truncatedTokens: p.truncatedTokens + r.droppedTokens,
      timeToFirstTokenMs: r.prefillMs,
      tokensPerSecond: r.generatedTokens > 1 ? r.tokensPerSecond : (live.tokensPerSecond ?? 0),
      stopReason: r.stopReason,
      seed,
    };
  }

  /** Saves the streaming reply now (the page is being hidden or closed). */
  flush(): void {
    const msg = this.state.messages.at(-1);
    if (msg?.status === 'streaming') {
      this.cancelSave();
      void this.saveMessage(msg);
    }
  }

  private scheduleSave(msg: ChatMessage): void {
    if (this.saveTimer !== null) return;
    const wait = Math.max(0, this.lastSave + SAVE_EVERY_MS - Date.now());
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      void this.saveMessage(msg);
    }, wait);
  }

  private cancelSave(): void {
    if (this.saveTimer !== null) clearTimeout(this.saveTimer);
    this.saveTimer = null;
  }

  private async saveMessage(msg: ChatMessage): Promise<void> {
    this.lastSave = Date.now();
    const c = this.state.current;
    if (!c || c.id !== msg.conversationId) {
      await this.db.putMessage(msg);
      return;
    }
    c.updatedAt = Date.now();
    await this.db.saveMessage(msg, c);
    const i = this.state.conversations.findIndex((x) => x.id === c.id);
    if (i >= 0) this.state.conversations[i] = { ...c, settings: { ...c.settings } };
  }

  /** Everything, as the JSON export file's text. */
  async exportJson(): Promise<string> {
    return JSON.stringify(await this.db.exportAll(), null, 1);
  }

  /** Adds the conversations of an export file; returns how many. */
  async importJson(text: string): Promise<number> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new Error('The file is not valid JSON.');
    }
    const n = await this.db.importAll(parsed);
    this.state.conversations = await this.db.listConversations();
    return n;
  }
}
