import { toHex } from './sha256.ts';

/** A random 128-bit id. getRandomValues, unlike randomUUID, also exists on plain-http pages. */
export function randomId(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(16)));
}
