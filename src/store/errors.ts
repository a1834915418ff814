import { WeightsError } from '../engine/errors.ts';
import { displayText } from '../engine/untrusted-text.ts';

// Every way the model store can fail, as one error type the UI can switch on.
// `message` is written for the user; `cause` keeps the underlying error for the console.
// Messages quote URLs, status lines and parser errors: they are shown through displayText.

export type StoreErrorCode =
  | 'quota'          // the browser refused to store more bytes
  | 'blocked'        // another tab with an older app version holds the database open
  | 'version-change' // this connection was closed so that a newer tab could upgrade the database
  | 'closed'         // the store was closed (by close(), or abnormally by the browser)
  | 'unsupported'    // no IndexedDB here
  | 'network'        // the connection failed or dropped; a partial download is kept
  | 'stalled'        // no byte arrived for the stall timeout; a partial download is kept
  | 'redirect'       // following the server's redirect failed (a loop, or a host that failed)
  | 'policy'         // the app's Content-Security-Policy blocked the request (a redirect to http)
  | 'http'           // the server answered with an error status
  | 'bad-url'        // not an https URL (or http://localhost), or no base URL to resolve against
  | 'size-mismatch'  // the download's size disagrees with what the server announced
  | 'hash-mismatch'  // the download's sha256 disagrees with what the server announced
  | 'invalid-model'  // config.json or the safetensors file is not a usable GPT-2 model
  | 'corrupt'        // stored chunks are missing or have the wrong size
  | 'cancelled'      // the caller aborted; a download stays resumable
  | 'busy'           // this model is already being downloaded (here or in another tab)
  | 'not-found'      // no such model, catalog entry or pending download
  | 'idb';           // any other IndexedDB failure

/** Longest message a StoreError carries: a URL, a reason and a bounded quote of a file. */
const MESSAGE_MAX = 1000;

export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(displayText(message, MESSAGE_MAX), options);
  }
}

const QUOTA_MESSAGE =
  'Not enough storage space for this model. Delete a stored model or free disk space, then try again.';

/** True for the DOMException browsers raise (or abort a transaction with) when storage is full. */
export function isQuotaError(e: unknown): boolean {
  return e instanceof Error && e.name === 'QuotaExceededError';
}

/** Maps an IndexedDB failure to a StoreError; StoreErrors pass through unchanged. */
export function fromIdbError(e: unknown): StoreError {
  if (e instanceof StoreError) return e;
  if (isQuotaError(e)) return new StoreError('quota', QUOTA_MESSAGE, { cause: e });
  if (e instanceof Error && e.name === 'InvalidStateError') {
    return new StoreError('closed', 'The model store was closed; reload the page.', { cause: e });
  }
  const detail = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new StoreError('idb', `The model store failed (${detail}).`, { cause: e });
}

/** Wraps a parser error: the file is not a model the engine can load. */
export function invalidModel(e: WeightsError): StoreError {
  return new StoreError('invalid-model', `Not a usable GPT-2 model: ${e.message}`, { cause: e });
}

export const cancelled = (message = 'The download was cancelled; it can be resumed.'): StoreError => new StoreError('cancelled', message);
