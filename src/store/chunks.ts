import type { ByteSource } from '../engine/weights.ts';
import { StoreError } from './errors.ts';
import type { StoreContext } from './tx.ts';
import { runTx } from './tx.ts';

// A stored file is a run of fixed-size chunks, keyed [fileId, index]; only the last may be short.
// Reading a range fetches just the chunks it overlaps, in one request.

export interface StoredFile {
  fileId: string;
  size: number;
  chunkBytes: number;
}

/** Number of chunks of a file of `size` bytes. */
export const chunkCount = (size: number, chunkBytes: number): number => Math.ceil(size / chunkBytes);

/** Bytes chunk `index` must hold. */
const expectedLength = (f: StoredFile, index: number): number => Math.min(f.chunkBytes, f.size - index * f.chunkBytes);

async function getChunks(ctx: StoreContext, f: StoredFile, first: number, last: number): Promise<Uint8Array[]> {
  const range = IDBKeyRange.bound([f.fileId, first], [f.fileId, last]);
  const buffers = await runTx(ctx, ['chunks'], 'readonly', (tx) => tx.store.getAll(range));
  if (buffers.length !== last - first + 1) {
    throw new StoreError('corrupt', `Stored model data is missing (chunks ${first}..${last} of file ${f.fileId}); delete the model and download it again.`);
  }
  return buffers.map((b, k) => {
    if (b.byteLength !== expectedLength(f, first + k)) {
      throw new StoreError('corrupt', `Stored chunk ${first + k} of file ${f.fileId} has ${b.byteLength} bytes, expected ${expectedLength(f, first + k)}.`);
    }
    return new Uint8Array(b);
  });
}

/**
 * Random access to a stored file. A read inside one chunk returns a view of it (no copy), so
 * callers must not write to what they get; the last chunk read is kept, because the engine reads
 * tensors in order and consecutive reads usually share a chunk.
 */
export function chunkSource(ctx: StoreContext, f: StoredFile): ByteSource {
  let cached: { index: number; bytes: Uint8Array } | null = null;
  const load = async (first: number, last: number): Promise<Uint8Array[]> => {
    const hit = cached?.index === first ? cached : null;
    const chunks = hit ? [hit.bytes] : [];
    if (!hit || last > first) chunks.push(...(await getChunks(ctx, f, hit ? first + 1 : first, last)));
    cached = { index: last, bytes: chunks[chunks.length - 1] };
    return chunks;
  };
  return {
    size: f.size,
    async read(begin, end) {
      end = Math.min(end, f.size);
      if (!(begin >= 0) || !(end > begin)) return new Uint8Array(0);
      const first = Math.floor(begin / f.chunkBytes);
      const last = Math.floor((end - 1) / f.chunkBytes);
      const chunks = await load(first, last);
      const base = first * f.chunkBytes;
      if (chunks.length === 1) return chunks[0].subarray(begin - base, end - base);
      return assemble(chunks, begin - base, end - begin);
    },
  };
}

/** Copies `length` bytes starting at `offset` into the concatenation of `chunks`. */
function assemble(chunks: Uint8Array[], offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let written = 0;
  for (let k = 0; k < chunks.length; k++) {
    const from = k === 0 ? offset : 0;
    const piece = chunks[k].subarray(from, from + length - written);
    out.set(piece, written);
    written += piece.length;
  }
  return out;
}
