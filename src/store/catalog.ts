import { StoreError } from './errors.ts';

// The models a user can pick: the one bundled with the app, a few GPT-2-family checkpoints on
// Hugging Face, or any directory URL that serves the same two files.

/** How a conversation is rendered into a prompt for this model (see src/app/templates.ts). */
export type ChatTemplateId = 'play-script' | 'dialogpt' | 'transcript';

export type ModelOrigin = 'bundled' | 'huggingface' | 'custom' | 'import';

export interface CatalogEntry {
  /** The store id the model gets once downloaded. */
  id: string;
  name: string;
  description: string;
  origin: Exclude<ModelOrigin, 'import'>;
  /**
   * Directory holding `config.json` and `model.safetensors`, ending in '/'. For the bundled model
   * it is relative to the app's base URL, so the same build works under any path.
   */
  baseUrl: string;
  /** Parameter count as people say it ("124M"); null when unknown. */
  parameters: string | null;
  /** Approximate size of model.safetensors; null when unknown. The exact figure comes from a HEAD request. */
  approxBytes: number | null;
  template: ChatTemplateId;
}

const MB = 1e6;
const hf = (repo: string, parameters: string, approxBytes: number, template: ChatTemplateId, description: string): CatalogEntry => ({
  id: `hf:${repo}`,
  name: repo.split('/')[1],
  description,
  origin: 'huggingface',
  baseUrl: `https://huggingface.co/${repo}/resolve/main/`,
  parameters,
  approxBytes,
  template,
});

// Sizes are those of the float32 model.safetensors on the Hub, rounded; planDownload() asks the
// server for the exact figure before anything large is fetched.
export const CATALOG: readonly CatalogEntry[] = Object.freeze([
  {
    id: 'shakespeare',
    name: 'Shakespeare (bundled)',
    description: 'A small GPT-2 trained on Shakespeare\'s plays; comes with the app, works offline at once.',
    origin: 'bundled',
    baseUrl: 'models/shakespeare/',
    parameters: null,
    approxBytes: 15 * MB,
    template: 'play-script',
  },
  hf('openai-community/gpt2', '124M', 548 * MB, 'transcript', 'The original GPT-2: general web text.'),
  hf('distilbert/distilgpt2', '82M', 353 * MB, 'transcript', 'A distilled GPT-2: smaller and faster, a little less fluent.'),
  hf('openai-community/gpt2-medium', '355M', 1520 * MB, 'transcript', 'GPT-2 medium: better text, three times the size of GPT-2.'),
  hf('microsoft/DialoGPT-small', '124M', 500 * MB, 'dialogpt', 'GPT-2 fine-tuned on Reddit conversations.'),
  hf('microsoft/DialoGPT-medium', '355M', 1440 * MB, 'dialogpt', 'DialoGPT at GPT-2-medium size: better replies, slower.'),
]);

export function catalogEntry(id: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.id === id);
}

// Plain http would let anyone on the path swap the weights; loopback is allowed for tests and local servers.
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Parses and checks a user-supplied URL: https anywhere, http only on loopback. */
export function checkModelUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new StoreError('bad-url', `"${raw}" is not a URL.`);
  }
  const ok = url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK.has(url.hostname));
  if (!ok) throw new StoreError('bad-url', `Models can only be downloaded over https (got ${url.protocol}//${url.host}).`);
  if (url.username || url.password) throw new StoreError('bad-url', 'URLs with a user name or password are not supported.');
  return url;
}

/**
 * A catalog entry for a directory that serves config.json and model.safetensors. Also accepts the
 * URL of either file, and a Hugging Face repository page (https://huggingface.co/owner/name).
 */
export function customModel(raw: string, template: ChatTemplateId, name?: string): CatalogEntry {
  const url = checkModelUrl(raw);
  url.search = '';
  url.hash = '';
  url.pathname = url.pathname.replace(/\/(config\.json|model\.safetensors)$/, '/');
  const page = /^\/([^/]+\/[^/]+?)(?:\/(?:tree|blob)\/([^/]+))?\/?$/.exec(url.pathname);
  if (url.hostname === 'huggingface.co' && page) url.pathname = `/${page[1]}/resolve/${page[2] ?? 'main'}/`;
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  const baseUrl = url.href;
  return {
    id: `url:${baseUrl}`,
    name: name?.trim() || defaultName(url),
    description: baseUrl,
    origin: 'custom',
    baseUrl,
    parameters: null,
    approxBytes: null,
    template,
  };
}

function defaultName(url: URL): string {
  const parts = url.pathname.split('/').filter((p) => p && p !== 'resolve' && p !== 'main');
  return parts.at(-1) ?? url.hostname;
}

export interface ModelFileUrls {
  config: string;
  weights: string;
}

/** Absolute URLs of the two files; `appBaseUrl` resolves the bundled model's relative directory. */
export function modelFileUrls(entry: CatalogEntry, appBaseUrl: string | null): ModelFileUrls {
  let base: URL;
  try {
    base = new URL(entry.baseUrl, appBaseUrl ?? undefined);
  } catch {
    throw new StoreError('bad-url', `Cannot resolve ${entry.baseUrl}: the app's base URL is unknown here (pass appBaseUrl).`);
  }
  // The bundled model comes from the app's own origin, whatever its scheme; anything else must pass.
  if (entry.origin !== 'bundled') checkModelUrl(base.href);
  return { config: new URL('config.json', base).href, weights: new URL('model.safetensors', base).href };
}
