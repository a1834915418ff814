import type { IDBPTransaction } from 'idb';
import type { StoreDb, StoreName, StoreSchema } from './db.ts';
import { StoreError, fromIdbError } from './errors.ts';

// The one way the store touches IndexedDB: a transaction that either commits everything `body`
// did or nothing, with failures mapped to StoreError. A full disk usually surfaces only when the
// transaction commits (as an abort whose `error` is a QuotaExceededError, while each request just
// says AbortError), so the transaction's own error is preferred over the request's.

export type Tx<S extends StoreName[], M extends IDBTransactionMode> = IDBPTransaction<StoreSchema, S, M>;

/** The state shared by every operation of an open store. */
export interface StoreContext {
  db: StoreDb;
  /** The database's name: Web Lock names are scoped by it. */
  dbName: string;
  /** Set when the connection was closed; every later operation fails with it. */
  closed: StoreError | null;
  now(): number;
  fetch: typeof fetch;
  /** Chunk size of new files; a resumed download keeps the size it started with. */
  chunkBytes: number;
  /** A download with no byte for this long fails as 'stalled' (resumable). */
  stallMs: number;
}

export async function runTx<const S extends StoreName[], M extends IDBTransactionMode, T>(
  ctx: StoreContext,
  stores: S,
  mode: M,
  body: (tx: Tx<S, M>) => Promise<T>,
): Promise<T> {
  if (ctx.closed) throw ctx.closed;
  let tx: Tx<S, M>;
  try {
    tx = ctx.db.transaction(stores, mode);
  } catch (e) {
    throw ctx.closed ?? fromIdbError(e);
  }
  const done = tx.done.then(
    () => null,
    (e: unknown) => e ?? new StoreError('idb', 'The transaction was aborted.'),
  );
  try {
    const result = await body(tx);
    const failure = await done;
    if (failure) throw failure;
    return result;
  } catch (e) {
    abortQuietly(tx);
    await done;
    throw fromIdbError(tx.error ?? e);
  }
}

function abortQuietly(tx: { abort(): void }): void {
  try {
    tx.abort();
  } catch {
    // Already committed or aborted.
  }
}

/** Key range of every chunk of one file. */
export function fileChunks(fileId: string, from = 0): IDBKeyRange {
  return IDBKeyRange.bound([fileId, from], [fileId, Number.MAX_SAFE_INTEGER]);
}
