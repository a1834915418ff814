import type { SamplerOptions } from '../engine/sampler.ts';

// Per-conversation settings: how the conversation becomes a prompt (mode, template, persona,
// speakers) and how the reply is sampled. Defaults depend on the model's chat template.

/** The chat templates a model can declare (src/app/templates.ts renders them). */
export type TemplateId = 'play-script' | 'dialogpt' | 'transcript';

/** 'chat' renders turns through the template; 'completion' continues the raw text. */
export type ChatMode = 'chat' | 'completion';

export interface ChatSettings {
  /** The store id of the model this conversation talks to (null = the app's current model). */
  modelId: string | null;
  mode: ChatMode;
  template: TemplateId;
  /** A system/persona line at the top of the prompt, for templates that have one. */
  persona: string;
  /** Play-script speakers: the user speaks as `userName`, the model answers as `botName`. */
  userName: string;
  botName: string;
  temperature: number;
  topK: number;
  topP: number;
  repetitionPenalty: number;
  maxNewTokens: number;
  /** A fixed seed makes replies reproducible; null draws a fresh one per reply. */
  seed: number | null;
  /** Shard workers: 0 = one per core, -1 = the single-thread reference engine. */
  workers: number;
}

export const TEMPLATE_LABELS: Record<TemplateId, string> = {
  'play-script': 'Play script (speaker names in capitals)',
  dialogpt: 'DialoGPT (turns joined by <|endoftext|>)',
  transcript: 'Transcript (User: / Assistant: lines)',
};

/** Templates that render a persona/system line. */
export const TEMPLATE_HAS_PERSONA: Record<TemplateId, boolean> = {
  'play-script': true,
  dialogpt: false,
  transcript: true,
};

const SAMPLING: Record<TemplateId, Pick<ChatSettings, 'temperature' | 'topK' | 'topP' | 'repetitionPenalty' | 'maxNewTokens'>> = {
  // A small model trained on Tiny Shakespeare: some heat keeps it from looping on one line.
  'play-script': { temperature: 0.8, topK: 40, topP: 0.95, repetitionPenalty: 1.1, maxNewTokens: 120 },
  // DialoGPT's model card samples with top-k / top-p; its replies are short.
  dialogpt: { temperature: 0.7, topK: 50, topP: 0.9, repetitionPenalty: 1.2, maxNewTokens: 64 },
  transcript: { temperature: 0.7, topK: 40, topP: 0.9, repetitionPenalty: 1.15, maxNewTokens: 120 },
};

export function defaultSettings(template: TemplateId = 'play-script', modelId: string | null = null): ChatSettings {
  return {
    modelId,
    mode: 'chat',
    template,
    persona: template === 'transcript' ? 'A conversation between a curious user and a helpful assistant.' : '',
    userName: 'ROMEO',
    botName: 'JULIET',
    ...SAMPLING[template],
    seed: null,
    workers: 0,
  };
}

/** Switches a conversation to another template, resetting only what is template-specific. */
export function withTemplate(s: ChatSettings, template: TemplateId): ChatSettings {
  const d = defaultSettings(template, s.modelId);
  return { ...s, ...SAMPLING[template], template, persona: s.template === template ? s.persona : d.persona };
}

/** A speaker name as the play-script template writes it: capitals, no colon or line break. */
export function speakerName(name: string, fallback: string): string {
  const n = name.replace(/[:\r\n]/g, ' ').replace(/\s+/g, ' ').trim().toUpperCase();
  return n.length > 0 ? n.slice(0, 40) : fallback;
}

/** Problems with the settings, as messages for the settings panel; [] when they are usable. */
export function validateSettings(s: ChatSettings): string[] {
  const errors: string[] = [];
  if (!(s.temperature >= 0 && s.temperature <= 100)) errors.push('Temperature must be between 0 and 100.');
  if (!(Number.isInteger(s.topK) && s.topK >= 0)) errors.push('Top-k must be a whole number ≥ 0 (0 = off).');
  if (!(s.topP > 0 && s.topP <= 1)) errors.push('Top-p must be in (0, 1] (1 = off).');
  if (!(s.repetitionPenalty > 0 && s.repetitionPenalty <= 100)) errors.push('Repetition penalty must be in (0, 100] (1 = off).');
  if (!(Number.isInteger(s.maxNewTokens) && s.maxNewTokens >= 1 && s.maxNewTokens <= 4096)) errors.push('Max new tokens must be a whole number from 1 to 4096.');
  if (s.seed !== null && !(Number.isInteger(s.seed) && Math.abs(s.seed) <= 0x7fffffff)) errors.push('Seed must be a whole number (or empty for a random one).');
  if (!(Number.isInteger(s.workers) && s.workers >= -1 && s.workers <= 64)) errors.push('Workers must be -1 (reference), 0 (one per core) or a count up to 64.');
  return errors;
}

/** A fresh seed for replies without a fixed one. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 0x7fffffff);
}

/** The engine's sampler options for one reply. */
export function samplerOptions(s: ChatSettings, seed: number): SamplerOptions {
  return { temperature: s.temperature, topK: s.topK, topP: s.topP, repetitionPenalty: s.repetitionPenalty, seed };
}

/** Fills in fields missing from settings saved by an older version or an import. */
export function normalizeSettings(raw: unknown, fallbackTemplate: TemplateId = 'play-script'): ChatSettings {
  const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Partial<Record<keyof ChatSettings, unknown>>;
  const template = isTemplateId(r.template) ? r.template : fallbackTemplate;
  const d = defaultSettings(template, typeof r.modelId === 'string' ? r.modelId : null);
  const num = (k: keyof ChatSettings): number => (typeof r[k] === 'number' && Number.isFinite(r[k]) ? (r[k] as number) : (d[k] as number));
  const str = (k: keyof ChatSettings): string => (typeof r[k] === 'string' ? (r[k] as string) : (d[k] as string));
  const s: ChatSettings = {
    modelId: d.modelId,
    mode: r.mode === 'completion' ? 'completion' : 'chat',
    template,
    persona: str('persona'),
    userName: str('userName'),
    botName: str('botName'),
    temperature: num('temperature'),
    topK: num('topK'),
    topP: num('topP'),
    repetitionPenalty: num('repetitionPenalty'),
    maxNewTokens: num('maxNewTokens'),
    seed: typeof r.seed === 'number' && Number.isInteger(r.seed) ? r.seed : null,
    workers: num('workers'),
  };
  return validateSettings(s).length === 0 ? s : { ...d, mode: s.mode, persona: s.persona, userName: s.userName, botName: s.botName };
}

export function isTemplateId(v: unknown): v is TemplateId {
  return v === 'play-script' || v === 'dialogpt' || v === 'transcript';
}
