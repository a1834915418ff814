import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

// Incremental SHA-256. WebCrypto only digests a whole buffer at once, and a model arrives in
// chunks we must not keep in memory, so the hash is fed chunk by chunk: @noble/hashes (audited,
// no dependencies). It replaced a hand-written FIPS 180-4 implementation: as fast (both ≈ 85–90
// MB/s in Node 20 on the 2-core dev machine, 64 MB in 4 MB pieces), for +1.2 kB gzipped per chunk.

export interface Hasher {
  update(data: Uint8Array): Hasher;
  /** The 32-byte digest; the hasher cannot be fed afterwards. */
  digest(): Uint8Array;
}

export const createSha256 = (): Hasher => sha256.create();

export const toHex = (bytes: Uint8Array): string => bytesToHex(bytes);

export const sha256Hex = (data: Uint8Array): string => toHex(sha256(data));
