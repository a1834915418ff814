import type { StoreContext } from './tx.ts';
import { fileChunks, runTx } from './tx.ts';

// Chunks no record points at can only come from an import whose tab died mid-copy (downloads
// record their file before writing a chunk). They would fill the quota unseen, so they are
// deleted on open. An import counts as dead once it has not written a chunk for this long:
const STALE_IMPORT_MS = 60 * 60 * 1000;

/** Deletes orphaned chunks; returns how many files were removed. */
export function sweepOrphans(ctx: StoreContext): Promise<number> {
  return runTx(ctx, ['models', 'downloads', 'imports', 'chunks'], 'readwrite', async (tx) => {
    const now = ctx.now();
    const live = new Set<string>();
    for (const m of await tx.objectStore('models').getAll()) live.add(m.fileId);
    for (const d of await tx.objectStore('downloads').getAll()) live.add(d.fileId);
    for (const i of await tx.objectStore('imports').getAll()) {
      if (now - i.updatedAt < STALE_IMPORT_MS) live.add(i.fileId);
      else await tx.objectStore('imports').delete(i.fileId);
    }
    const keys = await tx.objectStore('chunks').getAllKeys();
    const dead = new Set(keys.map(([fileId]) => fileId).filter((f) => !live.has(f)));
    for (const fileId of dead) await tx.objectStore('chunks').delete(fileChunks(fileId));
    return dead.size;
  });
}
