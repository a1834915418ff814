// The built app in Debian's Chromium: isolation, streaming, stop, persistence across a reload,
// offline reload + generation, safe rendering of hostile model output, and a screenshot.
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Served } from './harness.ts';
import { buildApp, ensureResults, launch, requireBundledModel, requireChromium, ROOT, serve } from './harness.ts';

let dist = '';
let server: Served | null = null;
let browser: Browser | null = null;

const page = (): Page => {
  if (!browser) throw new Error('the browser did not start');
  return browser.page;
};

/** Page logs, appended to a failure so a broken engine or store explains itself. */
const logs = (): string => (browser ? `\n--- page log ---\n${browser.logs.slice(-30).join('\n')}` : '');

async function waitForApp(p: Page): Promise<void> {
  await p.waitForSelector('[data-testid=composer]', { timeout: 30_000 });
  // The controllers are wired once the send button can be enabled: wait for the model list.
  await p.waitForFunction(() => !document.querySelector('[data-testid=model-picker]')?.hasAttribute('disabled'), null, { timeout: 30_000 });
}

/** Waits until the bundled model is in the store (first run: fetched from the app's origin). */
async function waitForBundledModel(p: Page): Promise<void> {
  await p.waitForFunction(
    () => [...document.querySelectorAll<HTMLOptionElement>('[data-testid=model-picker] option')].some((o) => o.value === 'shakespeare' && !o.textContent!.includes('downloading')),
    null,
    { timeout: 60_000 },
  );
}

interface ReplyState {
  status: string;
  text: string;
  error: string;
}

async function lastReply(p: Page): Promise<ReplyState> {
  return p.evaluate(() => {
    const all = document.querySelectorAll<HTMLElement>('[data-testid=message][data-role=assistant]');
    const m = all[all.length - 1];
    if (!m) return { status: 'none', text: '', error: '' };
    return {
      status: m.dataset.status ?? '',
      text: m.querySelector('[data-testid=reply]')?.textContent ?? '',
      error: m.querySelector('[role=alert]')?.textContent?.trim() ?? '',
    };
  });
}

const replyCount = (p: Page): Promise<number> => p.locator('[data-testid=message][data-role=assistant]').count();

/**
 * Waits for a new reply (there were `before` replies when the message was sent) to end; fails
 * with the app's own error message if it failed.
 */
async function waitForReplyEnd(p: Page, before: number, timeout = 90_000): Promise<ReplyState> {
  await p.waitForFunction(
    (n) => {
      const all = document.querySelectorAll<HTMLElement>('[data-testid=message][data-role=assistant]');
      const s = all[all.length - 1]?.dataset.status;
      return all.length > n && (s === 'done' || s === 'stopped' || s === 'error');
    },
    before,
    { timeout },
  );
  const r = await lastReply(p);
  if (r.status === 'error') throw new Error(`the reply failed in the app: ${r.error}${logs()}`);
  return r;
}

/** Polls `read` until `check` accepts its value; fails with the last value seen. */
async function eventually<T>(read: () => Promise<T>, check: (v: T) => boolean, what: string, timeout = 15_000): Promise<T> {
  const end = Date.now() + timeout;
  let v = await read();
  while (!check(v)) {
    if (Date.now() > end) throw new Error(`${what}: still ${JSON.stringify(v)} after ${timeout} ms${logs()}`);
    await new Promise((r) => setTimeout(r, 100));
    v = await read();
  }
  return v;
}

/** Sends a message; returns how many replies there were before it. */
async function send(p: Page, text: string): Promise<number> {
  const before = await replyCount(p);
  const box = p.locator('[data-testid=composer]');
  await box.fill(text);
  await box.press('Enter');
  return before;
}

async function openSettings(p: Page): Promise<void> {
  if (!(await p.locator('#settings-title').isVisible())) await p.click('[data-testid=open-settings]');
  await p.waitForSelector('#settings-title');
}

async function closePanel(p: Page): Promise<void> {
  await p.click('button[aria-label="Close the panel"]');
}

async function setNumber(p: Page, label: string, value: string): Promise<void> {
  const input = p.locator('label.field', { hasText: label }).locator('input');
  await input.fill(value);
  await input.press('Tab'); // commits on change
}

describe('the chat PWA in Chromium', () => {
  beforeAll(async () => {
    requireChromium();
    requireBundledModel();
    dist = await buildApp();
    server = await serve(dist);
    browser = await launch();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop().catch(() => undefined);
    if (dist) await rm(dist, { recursive: true, force: true });
  });

  it('is cross-origin isolated, controlled by the service worker, and stores the bundled model', async () => {
    const p = page();
    await p.goto(server!.url);
    await waitForApp(p);
    expect(await p.evaluate(() => crossOriginIsolated), 'crossOriginIsolated').toBe(true);
    await eventually(() => p.locator('[data-testid=isolation]').textContent(), (t) => t?.trim() === 'isolated', 'the isolation chip');
    expect(await p.locator('[data-testid=isolation]').getAttribute('class')).toContain('ok');
    expect(await p.evaluate(async () => (await navigator.serviceWorker.ready).active !== null), 'an active service worker').toBe(true);
    await waitForBundledModel(p);
    // Installable by Chromium's criteria (manifest, icons, service worker).
    const cdp = await p.context().newCDPSession(p);
    const { installabilityErrors } = (await cdp.send('Page.getInstallabilityErrors')) as { installabilityErrors: Array<{ errorId: string }> };
    expect(installabilityErrors.map((e) => e.errorId)).toEqual([]);
    await cdp.detach();
    // The service worker tells the page once that the shell is cached.
    const note = p.locator('[data-testid=offline-ready]');
    await note.waitFor({ timeout: 10_000 });
    await note.getByRole('button', { name: 'OK' }).click();
  });

  it('streams a reply from the bundled model over several animation frames, not in one jump', async () => {
    const p = page();
    await openSettings(p);
    // Completion mode has no stop sequence: the reply runs to the token limit (or the end-of-text
    // token), long enough to watch it grow. A fixed seed makes the run repeatable.
    await p.click('label:has(input[value=completion])');
    await setNumber(p, 'Max new tokens', '48');
    await setNumber(p, 'Seed', '7');
    await closePanel(p);

    await p.evaluate(() => {
      const w = window as unknown as { __frames: number[]; __sampling: boolean };
      w.__frames = [];
      w.__sampling = true;
      const sample = (): void => {
        const all = document.querySelectorAll('[data-testid=reply]');
        w.__frames.push(all.length ? (all[all.length - 1].textContent ?? '').length : 0);
        if (w.__sampling) requestAnimationFrame(sample);
      };
      requestAnimationFrame(sample);
    });
    const before = await send(p, 'ROMEO:\nBut soft, what light through yonder window breaks?\n');
    const reply = await waitForReplyEnd(p, before);
    const frames = await p.evaluate(() => {
      const w = window as unknown as { __frames: number[]; __sampling: boolean };
      w.__sampling = false;
      return w.__frames;
    });
    expect(reply.status).toBe('done');
    expect(reply.text.length).toBeGreaterThan(0);
    // Frames in which the reply's text was longer than in the frame before.
    let grew = 0;
    for (let i = 1; i < frames.length; i++) if (frames[i] > frames[i - 1]) grew++;
    expect(grew, `the reply grew in ${grew} frame(s); lengths per frame: ${frames.filter((x, i) => i === 0 || x !== frames[i - 1]).join(',')}`).toBeGreaterThanOrEqual(3);
    // Stats for the reply and the live bar.
    await eventually(() => p.locator('[data-testid=reply-stats]').last().textContent(), (t) => /reused \d+ of \d+ prompt tokens/.test(t ?? ''), 'the reply stats');
    expect(await p.locator('[data-testid=engine-mode]').textContent()).toMatch(/pool|fallback|reference/);
    expect(Number(await p.locator('[data-testid=window-used]').textContent())).toBeGreaterThan(0);
  });

  it('Stop halts the reply and keeps what was generated, marked stopped', async () => {
    const p = page();
    await openSettings(p);
    await setNumber(p, 'Max new tokens', '4096');
    await closePanel(p);
    const before = await send(p, 'JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n');
    await p.waitForFunction(() => {
      const all = document.querySelectorAll<HTMLElement>('[data-testid=message][data-role=assistant]');
      const m = all[all.length - 1];
      return m?.dataset.status === 'streaming' && (m.querySelector('[data-testid=reply]')?.textContent ?? '').length > 0;
    }, null, { timeout: 60_000 });
    await p.click('[data-testid=stop]');
    const r = await waitForReplyEnd(p, before);
    expect(r.status).toBe('stopped');
    await p.waitForTimeout(600);
    const after = await lastReply(p);
    expect(after.text).toBe(r.text);
    expect(r.text.length).toBeGreaterThan(0);
    await eventually(() => p.locator('[data-testid=message]').last().textContent(), (t) => (t ?? '').includes('Stopped'), 'the stopped flag');
    expect(await p.locator('[data-testid=send]').count()).toBe(1);
  });

  it('keeps a reply cut off by a reload mid-stream, marked stopped', async () => {
    const p = page();
    const before = await send(p, 'ROMEO:\nWhat say you, sirrah?\n');
    await p.waitForFunction((n) => {
      const all = document.querySelectorAll<HTMLElement>('[data-testid=message][data-role=assistant]');
      return all.length > n && all[all.length - 1].dataset.status === 'streaming' && (all[all.length - 1].querySelector('[data-testid=reply]')?.textContent ?? '').length > 0;
    }, before, { timeout: 60_000 });
    await p.waitForTimeout(600); // past one throttled save
    await p.reload();
    await waitForApp(p);
    await eventually(() => replyCount(p), (n) => n === before + 1, 'replies after the reload');
    const r = await lastReply(p);
    expect(r.status).toBe('stopped');
    expect(r.text.length).toBeGreaterThan(0);
    // Leave the conversation as the next test expects it: ending in the stopped reply.
  });

  it('keeps the conversation across a reload', async () => {
    const p = page();
    const before = await p.locator('[data-testid=message]').allTextContents();
    const title = await p.locator('[data-testid=conversation][aria-current=page]').textContent();
    await p.reload();
    await waitForApp(p);
    await eventually(() => p.locator('[data-testid=message]').count(), (n) => n === before.length, 'messages after the reload');
    expect(await p.locator('[data-testid=message]').allTextContents()).toEqual(before);
    expect(await p.locator('[data-testid=conversation][aria-current=page]').textContent()).toBe(title);
    expect((await lastReply(p)).status).toBe('stopped');
  });

  it('renders hostile model output as text: <img src=x onerror=...> never becomes an element', async () => {
    const p = page();
    const dialogs: string[] = [];
    p.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    const payload = 'Here: <img src=x onerror="window.__xss=1;alert(1)"> and <script>window.__xss=2</script> [x](javascript:alert(1))';
    const file = {
      format: 'gpt2-offline-chat-conversations', version: 2, exportedAt: new Date().toISOString(),
      conversations: [{
        id: 'xss-test', title: 'Hostile reply', titleEdited: true, createdAt: Date.now(), updatedAt: Date.now() + 1e6, contextStart: 0,
        settings: {},
        messages: [
          { id: 'x1', seq: 0, role: 'user', text: 'Say something nasty', createdAt: 1, status: 'done' },
          { id: 'x2', seq: 1, role: 'assistant', text: payload, createdAt: 2, status: 'done' },
        ],
      }],
    };
    await p.setInputFiles('[data-testid=import-input]', { name: 'hostile.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(file)) });
    const item = p.locator('[data-testid=conversation]', { hasText: 'Hostile reply' });
    await item.waitFor({ timeout: 10_000 });
    await item.click();
    await eventually(() => lastReply(p).then((r) => r.text), (t) => t.includes('<img src=x onerror='), 'the hostile reply as text');
    await p.waitForTimeout(300);
    expect(await p.locator('[data-testid=messages] img, [data-testid=messages] script').count()).toBe(0);
    expect(await p.locator('[data-testid=messages] a[href^="javascript"]').count()).toBe(0);
    expect(await p.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    expect(dialogs).toEqual([]);
  });

  it('with the server stopped, reloads offline and still generates a reply; saves a screenshot', async () => {
    const p = page();
    await server!.stop();
    server = null;
    await p.reload();
    await waitForApp(p);
    expect(await p.evaluate(() => crossOriginIsolated), 'isolated offline (headers from the service worker)').toBe(true);
    await p.click('[data-testid=new-chat]');
    // Short replies, so that two turns fit the window and nothing is dropped from the prompt.
    await openSettings(p);
    await setNumber(p, 'Max new tokens', '40');
    await closePanel(p);
    const r = await waitForReplyEnd(p, await send(p, 'What light through yonder window breaks?'));
    expect(r.status).toBe('done');
    const first = await eventually(() => p.locator('[data-testid=reply-stats]').last().textContent(), (t) => /of \d+ prompt tokens/.test(t ?? ''), 'the reply stats');
    const firstPrompt = Number(/of (\d+) prompt tokens/.exec(first ?? '')![1]);
    await waitForReplyEnd(p, await send(p, 'Speak again, bright angel!'));
    // The second turn's prompt starts with the first turn's prompt and reply: their cache is reused.
    const stats = await p.locator('[data-testid=reused]').last().textContent();
    const m = /reused (\d+) of (\d+)/.exec(stats ?? '');
    expect(m, stats ?? '').not.toBeNull();
    expect(Number(m![1]), stats ?? '').toBeGreaterThan(firstPrompt);
    const dir = await ensureResults();
    await p.screenshot({ path: join(dir, 'chat.png') });
    expect(existsSync(join(ROOT, 'test-results/chat.png'))).toBe(true);
  });
});
