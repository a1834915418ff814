import { END_OF_TEXT, encode as gpt2Encode } from '../engine/tokenizer.ts';
import type { ChatSettings, TemplateId } from './settings.ts';
import { speakerName } from './settings.ts';

// Chat templates: a conversation becomes the token ids the engine runs.
//
// Every template renders the conversation as a list of segments (a header, one per turn, then a
// cue for the reply) and encodes each segment on its own. The ids of a turn therefore never depend
// on what follows it, so the next turn's prompt starts with exactly the ids of this one, and the
// engine reuses their KV cache (it keeps the longest common token prefix).
//
// Segments start with their separator instead of ending with it ("\n\nJULIET:\n…", not
// "…\n\n"): GPT-2's BPE encodes "\n\nJULIET" as [198, 198, …] but a trailing "\n\n" as [628],
// so a trailing separator would give the model ids it never saw in training.

export interface Turn {
  role: 'user' | 'assistant';
  text: string;
  /**
   * A reply's own token ids, exactly as the model generated them after the cue (see replyIds).
   * Rendering those instead of re-encoding the text keeps the whole reply in the reused prefix:
   * BPE would encode "sofa" without the leading space the model produced, or split words the
   * model spelled in other pieces.
   */
  ids?: readonly number[];
}

export interface RenderRequest {
  /** The conversation, oldest first. In chat mode it usually ends with the user's turn. */
  turns: readonly Turn[];
  settings: Pick<ChatSettings, 'mode' | 'template' | 'persona' | 'userName' | 'botName' | 'maxNewTokens'>;
  /** The model's context window (config.nPositions). */
  window: number;
  /**
   * The first turn kept by the previous render of this conversation: turns dropped once stay
   * dropped, so the prompt keeps a stable prefix (and its KV cache) for the next turns.
   */
  firstTurn?: number;
  /** The model's end-of-text token (50256 for GPT-2). */
  eosTokenId?: number;
  encode?: (text: string) => number[];
}

export interface RenderedPrompt {
  ids: number[];
  /** Stop the reply at the first of these (the text is not part of the reply). */
  stopSequences: string[];
  /** The token that ends the reply; null = none (only stop sequences and the budget end it). */
  eosTokenId: number | null;
  /** Index of the first turn in the prompt: turns before it no longer fit the window. */
  firstTurn: number;
  /** Tokens cut from the front of the oldest kept turn when even it alone did not fit. */
  truncatedTokens: number;
  /** Tokens kept free for the reply. */
  replyBudget: number;
}

interface Segments {
  header: string | null;
  turn(t: Turn, first: boolean): string;
  cue(first: boolean): string | null;
  stops: string[];
  eos: boolean;
}

function playScript(s: RenderRequest['settings']): Segments {
  const user = speakerName(s.userName, 'ROMEO');
  const bot = speakerName(s.botName, 'JULIET');
  // A blank line means "the next speaker" in the corpus: keep a turn's lines together.
  const body = (text: string): string => text.replace(/\r\n?/g, '\n').replace(/\n\s*\n+/g, '\n').trim();
  const persona = body(s.persona);
  return {
    header: persona.length > 0 ? persona : null,
    turn: (t, first) => `${first ? '' : '\n\n'}${t.role === 'user' ? user : bot}:\n${body(t.text)}`,
    cue: (first) => `${first ? '' : '\n\n'}${bot}:\n`,
    // The reply ends where the model starts the next speaker's line.
    stops: ['\n\n', `\n${user}:`],
    eos: true,
  };
}

function transcript(s: RenderRequest['settings']): Segments {
  const persona = s.persona.trim();
  const line = (text: string): string => text.replace(/\r\n?/g, '\n').trim();
  return {
    header: persona.length > 0 ? persona : null,
    turn: (t, first) => `${first ? '' : '\n'}${t.role === 'user' ? 'User' : 'Assistant'}: ${line(t.text)}`,
    cue: (first) => `${first ? '' : '\n'}Assistant:`,
    stops: ['\nUser:'],
    eos: true,
  };
}

function completion(): Segments {
  return { header: null, turn: (t) => t.text, cue: () => null, stops: [], eos: true };
}

/** The prompt for the next reply. */
export function renderPrompt(req: RenderRequest): RenderedPrompt {
  const enc = req.encode ?? gpt2Encode;
  const eosId = req.eosTokenId ?? END_OF_TEXT;
  const { settings, turns, window } = req;
  if (!(Number.isInteger(window) && window >= 8)) throw new RangeError(`the context window must be at least 8 tokens, got ${window}`);
  const replyBudget = Math.max(1, Math.min(settings.maxNewTokens, Math.floor((window * 3) / 4)));
  const promptBudget = window - replyBudget;

  const dialogpt = settings.mode === 'chat' && settings.template === 'dialogpt';
  const seg = settings.mode === 'completion' ? completion() : settings.template === 'transcript' ? transcript(settings) : playScript(settings);

  const header = !dialogpt && seg.header !== null ? enc(seg.header) : [];
  const encodeFrom = (first: number): { parts: number[][]; cue: number[] } => {
    const parts: number[][] = [];
    for (let i = first; i < turns.length; i++) {
      const t = turns[i];
      const isFirst = i === first && header.length === 0;
      if (t.role === 'assistant' && t.ids !== undefined) {
        // The reply as generated: after the cue it answered (or after the previous turn's end-of-text).
        const cue = dialogpt ? null : seg.cue(isFirst);
        parts.push([...(cue === null ? [] : enc(cue)), ...t.ids, ...(dialogpt ? [eosId] : [])]);
      } else {
        parts.push(dialogpt ? [...enc(t.text.trim()), eosId] : enc(seg.turn(t, isFirst)));
      }
    }
    const cueText = dialogpt ? null : seg.cue(first >= turns.length && header.length === 0);
    return { parts, cue: cueText === null ? [] : enc(cueText) };
  };
  const total = (p: { parts: number[][]; cue: number[] }): number => header.length + p.cue.length + p.parts.reduce((a, x) => a + x.length, 0);

  let first = Math.min(Math.max(0, req.firstTurn ?? 0), Math.max(0, turns.length - 1));
  let rendered = encodeFrom(first);
  if (total(rendered) > promptBudget) {
    // Drop the oldest turns until the prompt fits in three quarters of its budget, so that the next
    // few turns fit too and keep this prefix (and its cached keys and values).
    const target = Math.floor(promptBudget * 0.75);
    while (first < turns.length - 1 && total(rendered) > target) {
      first++;
      rendered = encodeFrom(first);
    }
  }
  let truncatedTokens = 0;
  const ids: number[] = [...header];
  for (const p of rendered.parts) ids.push(...p);
  ids.push(...rendered.cue);
  if (ids.length > promptBudget) {
    // Even the newest turn alone is too long: keep its end (and the cue).
    truncatedTokens = ids.length - promptBudget;
    ids.splice(0, truncatedTokens);
  }
  if (ids.length === 0) ids.push(eosId);

  return {
    ids,
    stopSequences: settings.mode === 'completion' || dialogpt ? [] : seg.stops,
    eosTokenId: seg.eos || dialogpt ? eosId : null,
    firstTurn: first,
    truncatedTokens,
    replyBudget,
  };
}

/**
 * The token ids of a finished reply whose text is exactly `emitted`: the generated ids as far as
 * they spell it (a stop sequence's tokens and the end-of-text token are not part of the reply),
 * then the encoding of whatever text is left (a stop sequence cut in the middle of a token).
 */
export function replyIds(generated: readonly number[], emitted: string, eosTokenId: number | null, decode: (ids: number[]) => string, enc: (text: string) => number[] = gpt2Encode): number[] {
  const ids = generated.filter((id) => id !== eosTokenId);
  let k = ids.length;
  let text = decode(ids.slice(0, k));
  while (k > 0 && !emitted.startsWith(text)) text = decode(ids.slice(0, --k));
  const out = ids.slice(0, k);
  if (text.length < emitted.length) out.push(...enc(emitted.slice(text.length)));
  return out;
}

/** The reply as it is stored and shown: chat replies lose the whitespace around them. */
export function cleanReply(text: string, mode: ChatSettings['mode']): string {
  return mode === 'completion' ? text : text.trim();
}

/** The template a model declares, with a guess from its name for imported models. */
export function guessTemplate(name: string): TemplateId {
  const n = name.toLowerCase();
  if (n.includes('dialo')) return 'dialogpt';
  if (n.includes('shakespeare') || n.includes('play')) return 'play-script';
  return 'transcript';
}
