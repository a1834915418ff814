import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import type { ChatMessage, ConversationV1 } from '../../src/app/conversations.ts';
import { ConversationDB, DB_VERSION, EXPORT_FORMAT, ImportError, newConversation, parseExport, titleFrom } from '../../src/app/conversations.ts';
import { defaultSettings } from '../../src/app/settings.ts';

let n = 0;
const fresh = (): string => `test-conversations-${process.pid}-${n++}`;

function message(conversationId: string, seq: number, text: string, extra: Partial<ChatMessage> = {}): ChatMessage {
  return { id: `${conversationId}-m${seq}`, conversationId, seq, role: seq % 2 === 0 ? 'user' : 'assistant', text, createdAt: 1000 + seq, status: 'done', ...extra };
}

/** A v1 database as the first release of the app wrote it, built with the raw IndexedDB API. */
async function createV1(name: string, records: ConversationV1[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = indexedDB.open(name, 1);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore('conversations', { keyPath: 'id' });
      for (const r of records) store.put(r);
    };
    req.onsuccess = () => {
      req.result.close();
      resolve();
    };
    req.onerror = () => reject(req.error);
  });
}

describe('conversation database', () => {
  it('saves conversations and messages and lists them newest first', async () => {
    const db = await ConversationDB.open(fresh());
    const a = { ...newConversation(defaultSettings(), 1), title: 'A', updatedAt: 10 };
    const b = { ...newConversation(defaultSettings(), 2), title: 'B', updatedAt: 20 };
    await db.putConversation(a);
    await db.putConversation(b);
    await db.saveMessage(message(a.id, 1, 'second'), a);
    await db.saveMessage(message(a.id, 0, 'first'), a);
    expect((await db.listConversations()).map((c) => c.title)).toEqual(['B', 'A']);
    expect((await db.messages(a.id)).map((m) => m.text)).toEqual(['first', 'second']);
    expect(await db.messages(b.id)).toEqual([]);
    await db.deleteConversation(a.id);
    expect((await db.listConversations()).map((c) => c.title)).toEqual(['B']);
    expect(await db.messages(a.id)).toEqual([]);
    db.close();
  });

  it('keeps a reply that was streaming when the page died, marked stopped', async () => {
    const name = fresh();
    const db = await ConversationDB.open(name);
    const c = newConversation();
    await db.putConversation(c);
    await db.saveMessage(message(c.id, 0, 'Hello'), c);
    await db.saveMessage(message(c.id, 1, 'Half a rep', { status: 'streaming' }), c);
    db.close();
    const again = await ConversationDB.open(name);
    const ms = await again.messages(c.id);
    expect(ms[1]).toMatchObject({ text: 'Half a rep', status: 'stopped' });
    again.close();
  });

  it('migrates a v1 database (messages inline) to v2 with every conversation intact', async () => {
    const name = fresh();
    const v1: ConversationV1[] = [
      {
        id: 'c1', title: 'Verona', created: 100, updated: 300, model: 'shakespeare',
        settings: { temperature: 0.5, topK: 20, topP: 0.8, maxTokens: 77 },
        messages: [
          { role: 'user', content: 'What light through yonder window breaks?', time: 100 },
          { role: 'assistant', content: 'It is the east, and Juliet is the sun.', time: 200 },
          { role: 'user', content: 'Arise, fair sun', time: 250 },
          { role: 'assistant', content: 'And kill the env', time: 300, stopped: true },
        ],
      },
      { id: 'c2', title: 'Empty', created: 400, updated: 400, model: null, messages: [] },
      {
        id: 'c3', title: '<b>not html</b>', created: 500, updated: 600, model: null,
        messages: [{ role: 'user', content: 'ünïcödé 🎭', time: 500 }],
      },
    ];
    await createV1(name, v1);

    const db = await ConversationDB.open(name);
    const list = await db.listConversations();
    expect(list.map((c) => c.id)).toEqual(['c3', 'c2', 'c1']);
    const c1 = list.find((c) => c.id === 'c1')!;
    expect(c1).toMatchObject({ title: 'Verona', createdAt: 100, updatedAt: 300, contextStart: 0, titleEdited: false });
    expect(c1.settings).toMatchObject({ modelId: 'shakespeare', temperature: 0.5, topK: 20, topP: 0.8, maxNewTokens: 77 });
    expect(c1).not.toHaveProperty('messages');
    const ms = await db.messages('c1');
    expect(ms.map((m) => [m.role, m.text, m.createdAt, m.status])).toEqual(v1[0].messages.map((m) => [m.role, m.content, m.time, m.stopped ? 'stopped' : 'done']));
    expect(ms.map((m) => m.seq)).toEqual([0, 1, 2, 3]);
    expect(await db.messages('c2')).toEqual([]);
    expect((await db.messages('c3'))[0].text).toBe('ünïcödé 🎭');
    expect(list.find((c) => c.id === 'c3')!.title).toBe('<b>not html</b>');
    db.close();

    // The raw database is now at the current version with both stores.
    const raw = await new Promise<IDBDatabase>((resolve, reject) => {
      const req = indexedDB.open(name);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    expect(raw.version).toBe(DB_VERSION);
    expect([...raw.objectStoreNames].sort()).toEqual(['conversations', 'messages']);
    raw.close();
  });

  it('exports everything to JSON and imports it back (round trip)', async () => {
    const src = await ConversationDB.open(fresh());
    const a = { ...newConversation(defaultSettings('transcript'), 5), title: 'Round trip', updatedAt: 50, contextStart: 2 };
    await src.putConversation(a);
    const ms = [message(a.id, 0, 'Hi <img src=x onerror=alert(1)>'), message(a.id, 1, 'Hello', { status: 'stopped' }), message(a.id, 2, 'Again')];
    for (const m of ms) await src.putMessage(m);
    const exported = JSON.parse(JSON.stringify(await src.exportAll())) as unknown;
    expect(exported).toMatchObject({ format: EXPORT_FORMAT, version: DB_VERSION });

    const dst = await ConversationDB.open(fresh());
    expect(await dst.importAll(exported)).toBe(1);
    expect(await dst.listConversations()).toEqual([a]);
    expect(await dst.messages(a.id)).toEqual(ms);

    // Importing again never overwrites: the copy gets new ids.
    expect(await dst.importAll(exported)).toBe(1);
    const list = await dst.listConversations();
    expect(list).toHaveLength(2);
    const copy = list.find((c) => c.id !== a.id)!;
    expect(copy.title).toBe('Round trip');
    expect((await dst.messages(copy.id)).map((m) => m.text)).toEqual(ms.map((m) => m.text));
    expect(await dst.messages(a.id)).toEqual(ms);
    src.close();
    dst.close();
  });

  it('imports a v1 export and rejects malformed or newer files with a clear message', () => {
    const v1 = {
      format: EXPORT_FORMAT, version: 1, exportedAt: 'x',
      conversations: [{ id: 'old', title: 'Old', created: 1, updated: 2, model: null, messages: [{ role: 'user', content: 'hi', time: 1 }] }],
    };
    const [r] = parseExport(v1);
    expect(r.messages[0]).toMatchObject({ text: 'hi', role: 'user', status: 'done', seq: 0 });
    expect(() => parseExport({})).toThrow(ImportError);
    expect(() => parseExport({ format: EXPORT_FORMAT, version: 99, conversations: [] })).toThrow(/newer version/);
    expect(() => parseExport({ format: EXPORT_FORMAT, version: 2, conversations: [{ id: 'x', messages: [{ role: 'system', text: 1 }] }] })).toThrow(/malformed/);
  });

  it('titles a conversation after its first message', () => {
    expect(titleFrom('  Hello there\nsecond line')).toBe('Hello there');
    expect(titleFrom('word '.repeat(30)).length).toBeLessThanOrEqual(49);
    expect(titleFrom('')).toBe('New chat');
  });
});
