import type { ImportRecord } from './db.ts';
import type { StoreContext, Tx } from './tx.ts';
import { fileChunks, runTx } from './tx.ts';

// Chunks no record points at can only come from an import whose tab died mid-copy (downloads
// record their file before writing a chunk, and delete it with their chunks). They would fill the
// quota unseen, so they are deleted when the store opens, and shown (with a way to clear them)
// when a tab dies while another one is open.
//
// An import is alive while its tab holds its Web Lock (import.ts takes it before writing
// anything; the browser releases it when the tab closes or crashes). Where Web Locks are missing
// (Node), an import counts as dead once it has not written a chunk for this long:
const STALE_IMPORT_MS = 60 * 60 * 1000;

export interface Leftovers {
  /** Files (unfinished imports) whose chunks nothing uses. */
  files: number;
  bytes: number;
}

export const importLockName = (ctx: StoreContext, fileId: string): string => `${ctx.dbName}:import:${fileId}`;

/** Names of the Web Locks held in this origin, or null where there are none (Node). */
async function heldLocks(): Promise<Set<string> | null> {
  const locks = typeof navigator === 'undefined' ? undefined : navigator.locks;
  if (!locks) return null;
  const { held = [] } = await locks.query();
  return new Set(held.map((l) => l.name ?? ''));
}

type Stores = ['models', 'downloads', 'imports', 'chunks'];

/**
 * The files nobody owns and the dead import records, read in `tx`. `before` are the import
 * records that existed when `held` was queried: a newer one is alive by definition.
 */
async function deadFiles(ctx: StoreContext, tx: Tx<Stores, IDBTransactionMode>, held: Set<string> | null, before: Set<string>): Promise<{ files: Map<string, number>; imports: ImportRecord[] }> {
  const now = ctx.now();
  const live = new Set<string>();
  for (const m of await tx.objectStore('models').getAll()) live.add(m.fileId);
  for (const d of await tx.objectStore('downloads').getAll()) live.add(d.fileId);
  const imports: ImportRecord[] = [];
  for (const i of await tx.objectStore('imports').getAll()) {
    const alive = !before.has(i.fileId) || (held ? held.has(importLockName(ctx, i.fileId)) : now - i.updatedAt < STALE_IMPORT_MS);
    if (alive) live.add(i.fileId);
    else imports.push(i);
  }
  const files = new Map<string, number>();
  for (const [fileId] of await tx.objectStore('chunks').getAllKeys()) {
    if (!live.has(fileId)) files.set(fileId, (files.get(fileId) ?? 0) + 1);
  }
  return { files, imports };
}

async function snapshot(ctx: StoreContext): Promise<{ held: Set<string> | null; before: Set<string> }> {
  const held = await heldLocks();
  const before = new Set(await runTx(ctx, ['imports'], 'readonly', (tx) => tx.store.getAllKeys()));
  return { held, before };
}

/** What unfinished imports left behind: files and bytes (read from each file's first and last chunk). */
export async function findLeftovers(ctx: StoreContext): Promise<Leftovers> {
  const { held, before } = await snapshot(ctx);
  return runTx(ctx, ['models', 'downloads', 'imports', 'chunks'], 'readonly', async (tx) => {
    const { files } = await deadFiles(ctx, tx, held, before);
    let bytes = 0;
    const chunks = tx.objectStore('chunks');
    for (const [fileId, count] of files) {
      // Every chunk of a file but the last has the same size: two reads give the total.
      const [first] = await chunks.getAll(fileChunks(fileId), 1);
      const lastKey = (await chunks.getAllKeys(fileChunks(fileId))).at(-1)!;
      const last = count > 1 ? await chunks.get(lastKey) : first;
      bytes += (count - 1) * (first?.byteLength ?? 0) + (last?.byteLength ?? 0);
    }
    return { files: files.size, bytes };
  });
}

/** Deletes what unfinished imports left behind; returns how many files were removed. */
export async function sweepOrphans(ctx: StoreContext): Promise<number> {
  const { held, before } = await snapshot(ctx);
  return runTx(ctx, ['models', 'downloads', 'imports', 'chunks'], 'readwrite', async (tx) => {
    const { files, imports } = await deadFiles(ctx, tx, held, before);
    for (const i of imports) await tx.objectStore('imports').delete(i.fileId);
    for (const fileId of files.keys()) await tx.objectStore('chunks').delete(fileChunks(fileId));
    return files.size;
  });
}
