import { displayText } from './untrusted-text.ts';

// Every way a model file can be wrong, as one error type that names the culprit.
// The UI and the CLI show `message`; tests match `code` and `subject`. Both quote the file, so
// both go through displayText: one line, no control characters, bounded length.

export type WeightsErrorCode =
  | 'file-too-small'      // fewer than 8 bytes: not even a header length
  | 'header-too-large'    // header length beyond the file or beyond the sane limit
  | 'header-json'         // header is not valid JSON / not an object
  | 'header-entry'        // a tensor entry lacks dtype/shape/data_offsets or has the wrong types
  | 'dtype'               // a dtype we cannot read, or one that disagrees with the shape's byte size
  | 'offsets'             // data offsets outside the data section, reversed, or overlapping
  | 'truncated'           // the file ends before the data section does
  | 'trailing-data'       // bytes after the last tensor's data (the format forbids them)
  | 'missing-tensor'      // the config requires a tensor that is not in the file
  | 'shape'               // a tensor's shape disagrees with the config
  | 'values'              // a tensor holds NaN or infinity
  | 'config';             // config.json is malformed or out of range

/** Longest message a WeightsError carries (a name and a value or two, each shown bounded). */
export const MESSAGE_MAX = 400;

export class WeightsError extends Error {
  override readonly name = 'WeightsError';
  /** The tensor name or config field at fault, '' when the file as a whole is; shown safely. */
  readonly subject: string;
  constructor(
    readonly code: WeightsErrorCode,
    subject: string,
    message: string,
  ) {
    const shown = displayText(subject);
    super(displayText(shown ? `${shown}: ${message}` : message, MESSAGE_MAX));
    this.subject = shown;
  }
}
