import type { DBSchema, IDBPDatabase, IDBPTransaction, StoreNames } from 'idb';
import { openDB } from 'idb';
import type { ChatSettings } from './settings.ts';
import { defaultSettings, normalizeSettings } from './settings.ts';

// The conversations database: its own IndexedDB database (the model store has another).
//
// Stored format history (DB_VERSION is the IndexedDB version):
//   v1  one store, `conversations`, each record holding its messages inline:
//       { id, title, created, updated, model, settings?: { temperature, topK, topP, maxTokens },
//         messages: [{ role, content, time, stopped? }] }.
//       Saving a streaming reply rewrote the whole conversation every time.
//   v2  `conversations` holds metadata and settings only; `messages` holds one record per
//       message (indexed by conversation and order), so a streaming reply rewrites one record.
//       Messages gain ids, a status (done / streaming / stopped / error) and reply statistics.
// Opening an older database migrates it in the upgrade transaction (see `upgrade` below), and the
// JSON export carries the same version so older exports import too.

export const DB_NAME = 'gpt2-chat-conversations';
export const DB_VERSION = 2;
export const EXPORT_FORMAT = 'gpt2-offline-chat-conversations';

export type MessageStatus = 'done' | 'streaming' | 'stopped' | 'error';

/** What the UI shows under a reply. */
export interface ReplyStats {
  model: string;
  /** e.g. "pool · 2 workers · SharedArrayBuffer" */
  mode: string;
  window: number;
  promptTokens: number;
  reusedTokens: number;
  generatedTokens: number;
  /** Turns left out of the prompt because the conversation outgrew the window. */
  droppedTurns: number;
  /** Tokens cut from the oldest kept turn (or by the engine) to fit. */
  truncatedTokens: number;
  timeToFirstTokenMs: number;
  tokensPerSecond: number;
  stopReason: string;
  seed: number;
}

export interface ChatMessage {
  id: string;
  conversationId: string;
  /** Order within the conversation. */
  seq: number;
  role: 'user' | 'assistant';
  text: string;
  createdAt: number;
  status: MessageStatus;
  /** A reply's token ids as generated (templates.ts renders them instead of re-encoding `text`). */
  ids?: number[];
  stats?: ReplyStats;
  error?: string;
}

export interface Conversation {
  id: string;
  title: string;
  /** The user renamed it: no longer titled after its first message. */
  titleEdited: boolean;
  createdAt: number;
  updatedAt: number;
  settings: ChatSettings;
  /**
   * The `seq` of the oldest message still in the model's context: older ones no longer fit its
   * window and are left out of the prompt (see templates.ts). Only ever grows, so the prompt keeps
   * a stable prefix; 0 = everything.
   */
  contextStart: number;
}

/** A conversation with its messages, as exported. */
export interface ConversationRecord extends Conversation {
  messages: ChatMessage[];
}

export interface ExportFile {
  format: typeof EXPORT_FORMAT;
  version: number;
  exportedAt: string;
  conversations: ConversationRecord[];
}

interface ChatDB extends DBSchema {
  conversations: { key: string; value: Conversation; indexes: { updatedAt: number } };
  messages: { key: string; value: ChatMessage; indexes: { conversation: [string, number] } };
}

/** The v1 record, kept to migrate old databases and old exports. */
export interface ConversationV1 {
  id: string;
  title: string;
  created: number;
  updated: number;
  model: string | null;
  settings?: { temperature?: number; topK?: number; topP?: number; maxTokens?: number };
  messages: Array<{ role: 'user' | 'assistant'; content: string; time: number; stopped?: boolean }>;
}

export class ImportError extends Error {
  override readonly name = 'ImportError';
}

export function newId(): string {
  if (typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // Insecure contexts (plain http on a LAN address) have no randomUUID.
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** A v1 conversation in the v2 shape. */
export function fromV1(c: ConversationV1): ConversationRecord {
  const settings = normalizeSettings({
    modelId: c.model,
    temperature: c.settings?.temperature,
    topK: c.settings?.topK,
    topP: c.settings?.topP,
    maxNewTokens: c.settings?.maxTokens,
  });
  const messages: ChatMessage[] = c.messages.map((m, seq) => ({
    id: `${c.id}:${seq}`,
    conversationId: c.id,
    seq,
    role: m.role,
    text: m.content,
    createdAt: m.time,
    status: m.stopped ? 'stopped' : 'done',
  }));
  return {
    id: c.id,
    title: c.title,
    titleEdited: false,
    createdAt: c.created,
    updatedAt: c.updated,
    settings,
    contextStart: 0,
    messages,
  };
}

type UpgradeTx = IDBPTransaction<ChatDB, StoreNames<ChatDB>[], 'versionchange'>;

async function upgrade(db: IDBPDatabase<ChatDB>, oldVersion: number, tx: UpgradeTx): Promise<void> {
  if (oldVersion < 1) {
    // A new database: create the current layout directly.
    const conversations = db.createObjectStore('conversations', { keyPath: 'id' });
    conversations.createIndex('updatedAt', 'updatedAt');
  }
  if (oldVersion < 2) {
    const messages = db.createObjectStore('messages', { keyPath: 'id' });
    messages.createIndex('conversation', ['conversationId', 'seq']);
    if (oldVersion === 1) {
      // v1 → v2: move the inline messages out to their own store.
      const conversations = tx.objectStore('conversations');
      if (!conversations.indexNames.contains('updatedAt')) conversations.createIndex('updatedAt', 'updatedAt');
      const store = tx.objectStore('messages');
      let cursor = await conversations.openCursor();
      while (cursor) {
        const old = cursor.value as unknown as ConversationV1;
        const { messages: ms, ...conversation } = fromV1(old);
        for (const m of ms) await store.put(m);
        await cursor.update(conversation);
        cursor = await cursor.continue();
      }
    }
  }
}

export class ConversationDB {
  private constructor(private readonly db: IDBPDatabase<ChatDB>) {}

  /** Opens (creating or migrating) the database, and marks replies cut off by a crash as stopped. */
  static async open(name = DB_NAME): Promise<ConversationDB> {
    let opened: IDBPDatabase<ChatDB> | undefined;
    const db = await openDB<ChatDB>(name, DB_VERSION, {
      upgrade: (d, oldVersion, _newVersion, tx) => upgrade(d, oldVersion, tx),
      // A newer version of the app opened in another tab: let it upgrade.
      blocking: () => opened?.close(),
    });
    opened = db;
    const cdb = new ConversationDB(db);
    await cdb.markInterrupted();
    return cdb;
  }

  close(): void {
    this.db.close();
  }

  /** A reply that was streaming when the page died is kept, marked stopped. */
  private async markInterrupted(): Promise<void> {
    const tx = this.db.transaction('messages', 'readwrite');
    let cursor = await tx.store.openCursor();
    while (cursor) {
      if (cursor.value.status === 'streaming') await cursor.update({ ...cursor.value, status: 'stopped' });
      cursor = await cursor.continue();
    }
    await tx.done;
  }

  /** Newest first. */
  async listConversations(): Promise<Conversation[]> {
    const all = await this.db.getAllFromIndex('conversations', 'updatedAt');
    return all.reverse();
  }

  getConversation(id: string): Promise<Conversation | undefined> {
    return this.db.get('conversations', id);
  }

  async putConversation(c: Conversation): Promise<void> {
    await this.db.put('conversations', plain(c));
  }

  async deleteConversation(id: string): Promise<void> {
    const tx = this.db.transaction(['conversations', 'messages'], 'readwrite');
    const messages = tx.objectStore('messages');
    let cursor = await messages.index('conversation').openKeyCursor(IDBKeyRange.bound([id, -Infinity], [id, Infinity]));
    while (cursor) {
      await messages.delete(cursor.primaryKey);
      cursor = await cursor.continue();
    }
    await tx.objectStore('conversations').delete(id);
    await tx.done;
  }

  /** A conversation's messages in order. */
  messages(conversationId: string): Promise<ChatMessage[]> {
    return this.db.getAllFromIndex('messages', 'conversation', IDBKeyRange.bound([conversationId, -Infinity], [conversationId, Infinity]));
  }

  async putMessage(m: ChatMessage): Promise<void> {
    await this.db.put('messages', plain(m));
  }

  /** Saves a message and bumps its conversation's `updatedAt` in one transaction. */
  async saveMessage(m: ChatMessage, conversation: Conversation): Promise<void> {
    const tx = this.db.transaction(['conversations', 'messages'], 'readwrite');
    await Promise.all([tx.objectStore('messages').put(plain(m)), tx.objectStore('conversations').put(plain(conversation)), tx.done]);
  }

  async deleteMessages(ids: string[]): Promise<void> {
    const tx = this.db.transaction('messages', 'readwrite');
    await Promise.all([...ids.map((id) => tx.store.delete(id)), tx.done]);
  }

  async exportAll(): Promise<ExportFile> {
    const conversations = await this.listConversations();
    const records: ConversationRecord[] = [];
    for (const c of conversations) records.push({ ...c, messages: await this.messages(c.id) });
    return { format: EXPORT_FORMAT, version: DB_VERSION, exportedAt: new Date().toISOString(), conversations: records };
  }

  /**
   * Adds the conversations of an export. One whose id is already here is added as a copy with a
   * new id: an import never overwrites. Returns how many were added.
   */
  async importAll(file: unknown): Promise<number> {
    const records = parseExport(file);
    const tx = this.db.transaction(['conversations', 'messages'], 'readwrite');
    const conversations = tx.objectStore('conversations');
    const messages = tx.objectStore('messages');
    for (const r of records) {
      let { messages: ms, ...c } = r;
      if ((await conversations.getKey(c.id)) !== undefined) {
        const id = newId();
        c = { ...c, id };
        ms = ms.map((m) => ({ ...m, id: newId(), conversationId: id }));
      }
      await conversations.put(c);
      for (const m of ms) await messages.put(m);
    }
    await tx.done;
    return records.length;
  }
}

/** Svelte's reactive proxies cannot be cloned into IndexedDB: store plain copies. */
function plain<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Checks an export (this version or an older one) and returns its conversations in the current shape. */
export function parseExport(file: unknown): ConversationRecord[] {
  if (!isObj(file) || file.format !== EXPORT_FORMAT) throw new ImportError('This is not a conversations export of this app.');
  const version = file.version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) throw new ImportError('The export has no valid version number.');
  if (version > DB_VERSION) throw new ImportError(`The export is from a newer version of the app (format ${version}); update the app to import it.`);
  if (!Array.isArray(file.conversations)) throw new ImportError('The export has no conversation list.');
  return file.conversations.map((raw, i) => {
    const where = `conversation ${i + 1}`;
    if (!isObj(raw) || typeof raw.id !== 'string' || raw.id.length === 0) throw new ImportError(`${where} has no id.`);
    if (!Array.isArray(raw.messages)) throw new ImportError(`${where} has no messages.`);
    if (version === 1) {
      for (const m of raw.messages) {
        if (!isObj(m) || (m.role !== 'user' && m.role !== 'assistant') || typeof m.content !== 'string') throw new ImportError(`${where} has a malformed message.`);
      }
      return fromV1({
        id: raw.id,
        title: typeof raw.title === 'string' ? raw.title : 'Imported conversation',
        created: num(raw.created, Date.now()),
        updated: num(raw.updated, Date.now()),
        model: typeof raw.model === 'string' ? raw.model : null,
        settings: isObj(raw.settings) ? (raw.settings as ConversationV1['settings']) : undefined,
        messages: raw.messages as ConversationV1['messages'],
      });
    }
    const messages: ChatMessage[] = raw.messages.map((m, seq) => {
      if (!isObj(m) || (m.role !== 'user' && m.role !== 'assistant') || typeof m.text !== 'string') throw new ImportError(`${where} has a malformed message.`);
      const status: MessageStatus = m.status === 'stopped' || m.status === 'streaming' ? 'stopped' : m.status === 'error' ? 'error' : 'done';
      const msg: ChatMessage = {
        id: typeof m.id === 'string' && m.id.length > 0 ? m.id : newId(),
        conversationId: raw.id as string,
        seq: typeof m.seq === 'number' ? m.seq : seq,
        role: m.role,
        text: m.text,
        createdAt: num(m.createdAt, Date.now()),
        status,
      };
      if (isObj(m.stats)) msg.stats = m.stats as unknown as ReplyStats;
      if (Array.isArray(m.ids) && m.ids.every((x) => Number.isInteger(x) && x >= 0 && x < 1 << 20)) msg.ids = m.ids as number[];
      if (typeof m.error === 'string') msg.error = m.error;
      return msg;
    });
    return {
      id: raw.id,
      title: typeof raw.title === 'string' ? raw.title : 'Imported conversation',
      titleEdited: raw.titleEdited === true,
      createdAt: num(raw.createdAt, Date.now()),
      updatedAt: num(raw.updatedAt, Date.now()),
      settings: normalizeSettings(raw.settings),
      contextStart: Number.isInteger(raw.contextStart) && (raw.contextStart as number) >= 0 ? (raw.contextStart as number) : 0,
      messages,
    };
  });
}

function num(v: unknown, fallback: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/** A new, empty conversation. */
export function newConversation(settings: ChatSettings = defaultSettings(), now = Date.now()): Conversation {
  return { id: newId(), title: 'New chat', titleEdited: false, createdAt: now, updatedAt: now, settings, contextStart: 0 };
}

/** A title from the first message: its first line, cut at a word near 48 characters. */
export function titleFrom(text: string): string {
  const line = text.trim().split('\n')[0].replace(/\s+/g, ' ');
  if (line.length <= 48) return line || 'New chat';
  const cut = line.slice(0, 48);
  const space = cut.lastIndexOf(' ');
  return `${space > 24 ? cut.slice(0, space) : cut}…`;
}
