import { describe, expect, it } from 'vitest';
import { CATALOG, catalogEntry, customModel, modelFileUrls } from '../../src/store/catalog.ts';
import { StoreError } from '../../src/store/errors.ts';

const code = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof StoreError ? e.code : `not a StoreError: ${String(e)}`;
  }
  return undefined;
};

describe('catalog', () => {
  it('lists the bundled model and the five Hugging Face models with sizes and templates', () => {
    expect(CATALOG.map((e) => [e.id, e.template])).toEqual([
      ['shakespeare', 'play-script'],
      ['hf:openai-community/gpt2', 'transcript'],
      ['hf:distilbert/distilgpt2', 'transcript'],
      ['hf:openai-community/gpt2-medium', 'transcript'],
      ['hf:microsoft/DialoGPT-small', 'dialogpt'],
      ['hf:microsoft/DialoGPT-medium', 'dialogpt'],
    ]);
    for (const e of CATALOG) expect(e.approxBytes, e.id).toBeGreaterThan(1e6);
    expect(new Set(CATALOG.map((e) => e.id)).size).toBe(CATALOG.length);
  });

  it('resolves Hugging Face files under resolve/main', () => {
    expect(modelFileUrls(catalogEntry('hf:microsoft/DialoGPT-small')!, null)).toEqual({
      config: 'https://huggingface.co/microsoft/DialoGPT-small/resolve/main/config.json',
      weights: 'https://huggingface.co/microsoft/DialoGPT-small/resolve/main/model.safetensors',
    });
  });

  it('resolves the bundled model against the app base URL, and needs one', () => {
    const bundled = catalogEntry('shakespeare')!;
    expect(modelFileUrls(bundled, 'https://example.org/chat/').weights).toBe('https://example.org/chat/models/shakespeare/model.safetensors');
    // Same-origin, so even a plain-http app (a LAN server) may serve it.
    expect(modelFileUrls(bundled, 'http://192.168.1.5:4173/').config).toBe('http://192.168.1.5:4173/models/shakespeare/config.json');
    expect(code(() => modelFileUrls(bundled, null))).toBe('bad-url');
  });
});

describe('customModel', () => {
  it('accepts an https directory, adding the trailing slash', () => {
    const e = customModel('https://models.example.com/gpt2-poetry', 'transcript', ' Poetry ');
    expect(e).toMatchObject({ id: 'url:https://models.example.com/gpt2-poetry/', name: 'Poetry', origin: 'custom', approxBytes: null });
    expect(modelFileUrls(e, null).weights).toBe('https://models.example.com/gpt2-poetry/model.safetensors');
  });

  it('accepts the URL of either file and a Hugging Face repository page', () => {
    expect(customModel('https://x.example/a/b/model.safetensors?download=1', 'transcript').baseUrl).toBe('https://x.example/a/b/');
    expect(customModel('https://x.example/a/config.json', 'transcript').baseUrl).toBe('https://x.example/a/');
    expect(customModel('https://huggingface.co/owner/my-gpt2', 'dialogpt').baseUrl).toBe('https://huggingface.co/owner/my-gpt2/resolve/main/');
    expect(customModel('https://huggingface.co/owner/my-gpt2/tree/v2', 'dialogpt').baseUrl).toBe('https://huggingface.co/owner/my-gpt2/resolve/v2/');
    expect(customModel('https://huggingface.co/owner/my-gpt2', 'dialogpt').name).toBe('my-gpt2');
  });

  it('rejects plain http except on loopback, other schemes, credentials and garbage', () => {
    expect(code(() => customModel('http://example.com/m/', 'transcript'))).toBe('bad-url');
    expect(code(() => customModel('http://10.0.0.2/m/', 'transcript'))).toBe('bad-url');
    expect(code(() => customModel('ftp://example.com/m/', 'transcript'))).toBe('bad-url');
    expect(code(() => customModel('file:///home/me/m/', 'transcript'))).toBe('bad-url');
    expect(code(() => customModel('https://user:pw@example.com/m/', 'transcript'))).toBe('bad-url');
    expect(code(() => customModel('not a url', 'transcript'))).toBe('bad-url');
    expect(code(() => customModel('http://localhost:8080/m/', 'transcript'))).toBeUndefined();
    expect(code(() => customModel('http://127.0.0.1:8080/m/', 'transcript'))).toBeUndefined();
    expect(code(() => customModel('http://[::1]:8080/m/', 'transcript'))).toBeUndefined();
  });

  it('re-checks a hand-made entry when resolving its files', () => {
    const forged = { ...customModel('https://ok.example/m/', 'transcript'), baseUrl: 'http://evil.example/m/' };
    expect(code(() => modelFileUrls(forged, null))).toBe('bad-url');
  });
});
