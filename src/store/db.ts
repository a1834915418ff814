import type { DBSchema, IDBPDatabase } from 'idb';
import { wrap } from 'idb';
import type { ChatTemplateId, ModelOrigin } from './catalog.ts';
import { StoreError, fromIdbError } from './errors.ts';

// The IndexedDB schema. A model's weights live in `chunks` under a file id, never under the model
// id, so a new download of a model can never overwrite the chunks of a stored one; a model or a
// partial download points at its file id, and moving a file from "partial" to "complete" is one
// transaction that writes the model record and deletes the download record.

/** A complete, validated model. */
export interface ModelRecord {
  id: string;
  name: string;
  template: ChatTemplateId;
  origin: ModelOrigin;
  /** Where the weights came from; null for imported files. */
  sourceUrl: string | null;
  configText: string;
  fileId: string;
  size: number;
  chunkBytes: number;
  sha256: string;
  addedAt: number;
  lastUsedAt: number | null;
}

/** What to download: a catalog entry or a custom URL, resolved to its two files. */
export interface DownloadTarget {
  id: string;
  name: string;
  template: ChatTemplateId;
  origin: Exclude<ModelOrigin, 'import'>;
  configUrl: string;
  weightsUrl: string;
}

/** A download in progress or interrupted: chunks [0, bytesStored / chunkBytes) are stored. */
export interface DownloadRecord extends DownloadTarget {
  configText: string;
  fileId: string;
  chunkBytes: number;
  /** A multiple of chunkBytes, except once the last chunk is in (then it equals totalBytes). */
  bytesStored: number;
  /** From Content-Length / Content-Range; null until a response stated it. */
  totalBytes: number | null;
  /** The sha256 the server (or the caller) announced, lowercase hex. */
  sha256: string | null;
  /** The response's strong ETag, to notice a file that changed between two sessions. */
  etag: string | null;
  startedAt: number;
  updatedAt: number;
}

/** An import being copied in; chunks of a stale one (its tab died) are swept on open. */
export interface ImportRecord {
  fileId: string;
  name: string;
  updatedAt: number;
}

export interface StoreSchema extends DBSchema {
  models: { key: string; value: ModelRecord };
  downloads: { key: string; value: DownloadRecord };
  imports: { key: string; value: ImportRecord };
  /** Key [fileId, index]; value the chunk's bytes. */
  chunks: { key: [string, number]; value: ArrayBuffer };
}

export type StoreDb = IDBPDatabase<StoreSchema>;
export type StoreName = 'models' | 'downloads' | 'imports' | 'chunks';

type Migration = (db: StoreDb) => void;

// One entry per schema version. Migrations only ever add: an upgrade must not lose a stored model.
const MIGRATIONS: Migration[] = [
  (db) => {
    const create = (name: StoreName, keyPath?: string): void => {
      if (!db.objectStoreNames.contains(name)) db.createObjectStore(name, keyPath ? { keyPath } : undefined);
    };
    create('models', 'id');
    create('downloads', 'id');
    create('imports', 'fileId');
    create('chunks');
  },
];

export const DB_VERSION = MIGRATIONS.length;
export const DEFAULT_DB_NAME = 'gpt2-model-store';

function upgrade(db: StoreDb, oldVersion: number): void {
  for (let v = oldVersion; v < MIGRATIONS.length; v++) MIGRATIONS[v](db);
}

export interface OpenHooks {
  /** The connection was closed under us: a newer tab needs to upgrade, or the browser dropped it. */
  onClosed(reason: StoreError): void;
}

/**
 * Opens (creating or upgrading) the database. Rejects with code 'blocked' when a tab running an
 * older version keeps it open; if that tab lets go later, the late connection is closed at once.
 */
export function openStoreDb(factory: IDBFactory, name: string, hooks: OpenHooks): Promise<StoreDb> {
  return new Promise((resolve, reject) => {
    let request: IDBOpenDBRequest;
    try {
      request = factory.open(name, DB_VERSION);
    } catch (e) {
      reject(fromIdbError(e));
      return;
    }
    let gaveUp = false;
    request.onupgradeneeded = (event) => upgrade(wrap(request.result) as StoreDb, event.oldVersion);
    request.onblocked = () => {
      gaveUp = true;
      reject(new StoreError('blocked', 'The model store is held open by another tab running an older version of this app. Close that tab and reload this one.'));
    };
    request.onerror = () => reject(fromIdbError(request.error));
    request.onsuccess = () => {
      const raw = request.result;
      if (gaveUp) return raw.close();
      watch(raw, hooks);
      resolve(wrap(raw) as StoreDb);
    };
  });
}

function watch(raw: IDBDatabase, hooks: OpenHooks): void {
  raw.onversionchange = () => {
    // Closing at once lets the other tab's upgrade (or deletion) proceed instead of blocking it.
    raw.close();
    hooks.onClosed(new StoreError('version-change', 'The app was updated in another tab. Reload this page to keep using your models.'));
  };
  raw.onclose = () => {
    hooks.onClosed(new StoreError('closed', 'The browser closed the model store unexpectedly (storage cleared?). Reload the page.'));
  };
}
