// Text that came from a file or a server (a tensor name, a dtype, a config value, a status line)
// and is about to be shown to a user, in a terminal or on the page. Such text may carry control
// characters (a newline and ANSI colour codes forge lines of CLI output; bidi overrides reorder
// what the user reads) or be megabytes long. Everything that quotes it goes through here.

/** Longest rendering of one quoted value, in UTF-16 units (not counting the "…" note). */
export const VALUE_MAX = 100;

// C0/C1 controls, DEL, format characters (bidi overrides, zero-width joiners, BOM), line and
// paragraph separators, and lone surrogates.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

function escapeChar(ch: string): string {
  if (ch === '\n') return '\\n';
  if (ch === '\r') return '\\r';
  if (ch === '\t') return '\\t';
  const cp = ch.codePointAt(0)!;
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
}

/**
 * `s` with every control or invisible formatting character written as an escape (`\n`, `\x1b`,
 * `\u{202e}`) and cut to about `max` units with a note of the full length. Idempotent: applying
 * it twice changes nothing, so a message built from shown parts may be shown again. Work is
 * bounded by `max`, whatever the length of `s`.
 */
export function displayText(s: string, max = VALUE_MAX): string {
  let out = '';
  let i = 0;
  while (i < s.length && out.length < max) {
    const cp = s.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    // A lone high surrogate: codePointAt returns it alone, and String.fromCodePoint keeps it.
    out += UNSAFE.test(ch) ? escapeChar(ch) : ch;
    i += ch.length;
  }
  if (i >= s.length) return out;
  return `${out}… (${s.length.toLocaleString('en-US')} characters in all)`;
}

/**
 * A parsed JSON value as a short, safe, JSON-like string: strings quoted and shown through
 * displayText, long arrays and objects cut with a count. Bounded by `max`, however large or
 * deeply nested the value (every level of nesting spends at least one unit of the budget).
 */
export function displayValue(v: unknown, max = VALUE_MAX): string {
  if (v === undefined) return '(missing)';
  if (typeof v === 'string') return `"${displayText(v, max)}"`;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (Array.isArray(v)) return bounded('[', ']', v, max, (x, budget) => displayValue(x, budget));
  if (typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    return bounded('{', '}', entries, max, ([k, x], budget) => `"${displayText(k, budget)}": ${displayValue(x, budget)}`);
  }
  return `(${typeof v})`;
}

function bounded<T>(open: string, close: string, items: readonly T[], max: number, show: (x: T, budget: number) => string): string {
  let out = open;
  let n = 0;
  for (; n < items.length; n++) {
    const budget = max - out.length;
    if (budget <= 2) break;
    out += (n > 0 ? ', ' : '') + show(items[n], budget - 2);
  }
  if (n < items.length) out += `${n > 0 ? ', ' : ''}… ${items.length.toLocaleString('en-US')} items`;
  return out + close;
}
