// The PWA around the chat: the update prompt when a new version is deployed, keyboard-only use,
// the phone layout, the theme toggle, export, and refusing a plain-http model URL.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Served } from './harness.ts';
import { buildApp, ensureResults, freePort, launch, requireBundledModel, requireChromium, ROOT, serve, serveStatic, stageModel } from './harness.ts';

let distA = '';
let distB = '';
let port = 0;
let server: Served | null = null;
let browser: Browser | null = null;

const page = (): Page => {
  if (!browser) throw new Error('the browser did not start');
  return browser.page;
};

async function waitForApp(p: Page): Promise<void> {
  await p.waitForSelector('[data-testid=composer]', { timeout: 30_000 });
  await p.waitForFunction(() => !document.querySelector('[data-testid=model-picker]')?.hasAttribute('disabled'), null, { timeout: 30_000 });
}

describe('the PWA shell in Chromium', () => {
  beforeAll(async () => {
    requireChromium();
    requireBundledModel();
    // Two deployments of the app that differ only in their build id.
    distA = await buildApp({ APP_BUILD_ID: 'build-A' });
    distB = await buildApp({ APP_BUILD_ID: 'build-B' });
    port = await freePort();
    server = await serve(distA, port);
    browser = await launch();
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop().catch(() => undefined);
    for (const d of [distA, distB]) if (d) await rm(d, { recursive: true, force: true });
  });

  it('offers to reload when a new version is deployed, and the reload runs it', async () => {
    const p = page();
    await p.goto(server!.url);
    await waitForApp(p);
    expect(await p.locator('[data-testid=build-id]').textContent()).toBe('build-A');
    await p.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 30_000 });
    expect(await p.locator('[data-testid=update-prompt]').count()).toBe(0);

    // Deploy build B at the same address.
    await server!.stop();
    server = await serve(distB, port);
    await p.reload();
    await waitForApp(p);
    // The page still runs the cached build A until the user agrees.
    expect(await p.locator('[data-testid=build-id]').textContent()).toBe('build-A');
    const prompt = p.locator('[data-testid=update-prompt]');
    await prompt.waitFor({ timeout: 30_000 });
    await prompt.getByRole('button', { name: 'Reload' }).click();
    await p.waitForFunction(() => document.querySelector('[data-testid=build-id]')?.textContent === 'build-B', null, { timeout: 30_000 });
    expect(await p.evaluate(() => crossOriginIsolated)).toBe(true);
  });

  it('works from the keyboard alone: skip link, Shift+Enter for a new line, Enter to send', async () => {
    const p = page();
    await p.reload();
    await waitForApp(p);
    // The skip link is the first stop of the page's tab order, and shows itself when focused.
    expect(await p.evaluate(() => document.querySelector('#app a, #app button, #app input, #app select, #app textarea')?.textContent)).toBe('Skip to the message box');
    await p.focus('a.skip');
    expect((await p.locator('a.skip').boundingBox())!.x).toBeGreaterThanOrEqual(0);
    await p.keyboard.press('Enter');
    expect(await p.evaluate(() => document.activeElement?.id)).toBe('composer-input');
    await p.keyboard.type('Line one');
    await p.keyboard.press('Shift+Enter');
    await p.keyboard.type('Line two');
    expect(await p.locator('[data-testid=composer]').inputValue()).toBe('Line one\nLine two');
    await p.keyboard.press('Enter');
    const user = p.locator('[data-testid=message][data-role=user]').last();
    await user.waitFor();
    expect(await user.locator('.content').textContent()).toBe('Line one\nLine two');
    expect(await p.locator('[data-testid=composer]').inputValue()).toBe('');
    // Every visible control has a name a screen reader can say.
    const unnamed = await p.evaluate(() =>
      [...document.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href]')]
        .filter((el) => el.offsetParent !== null && el.getAttribute('aria-hidden') !== 'true')
        .filter((el) => {
          const labels = (el as HTMLInputElement).labels;
          return !(el.getAttribute('aria-label') || el.textContent?.trim() || (labels && labels.length > 0) || el.getAttribute('title'));
        })
        .map((el) => el.outerHTML.slice(0, 120)),
    );
    expect(unnamed).toEqual([]);
    // Escape stops the reply if it is still streaming; either way it ends.
    await p.keyboard.press('Escape');
    await p.waitForFunction(() => {
      const all = document.querySelectorAll<HTMLElement>('[data-testid=message][data-role=assistant]');
      const s = all[all.length - 1]?.dataset.status;
      return s === 'done' || s === 'stopped';
    }, null, { timeout: 60_000 });
  });

  it('collapses the sidebar on a phone-sized screen and switches themes', async () => {
    const p = page();
    await p.setViewportSize({ width: 390, height: 844 });
    const sidebar = p.locator('#sidebar');
    expect(await sidebar.isVisible()).toBe(false);
    await p.click('button[aria-label=Conversations]');
    await p.waitForFunction(() => getComputedStyle(document.getElementById('sidebar')!).visibility === 'visible');
    expect(await p.locator('[data-testid=new-chat]').isVisible()).toBe(true);
    await p.keyboard.press('Escape');
    await p.waitForFunction(() => getComputedStyle(document.getElementById('sidebar')!).visibility === 'hidden');

    const before = await p.evaluate(() => document.documentElement.dataset.theme);
    await p.click('button[aria-label^="Switch to"]');
    const after = await p.evaluate(() => document.documentElement.dataset.theme);
    expect(new Set([before, after])).toEqual(new Set(['light', 'dark']));
    const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(bg).toBe(after === 'dark' ? 'rgb(16, 20, 24)' : 'rgb(246, 247, 249)');
    await p.screenshot({ path: join(await ensureResults(), 'chat-phone.png') });
    await p.setViewportSize({ width: 1280, height: 860 });
  });

  it('exports every conversation to a JSON file', async () => {
    const p = page();
    const [download] = await Promise.all([p.waitForEvent('download'), p.click('[data-testid=export]')]);
    expect(download.suggestedFilename()).toMatch(/^conversations-\d{4}-\d{2}-\d{2}\.json$/);
    const file = JSON.parse(await readFile((await download.path())!, 'utf8')) as { format: string; conversations: Array<{ messages: Array<{ text: string }> }> };
    expect(file.format).toBe('gpt2-offline-chat-conversations');
    expect(file.conversations.some((c) => c.messages.some((m) => m.text === 'Line one\nLine two'))).toBe(true);
  });

  it('imports a model from picked files and chats with it', async () => {
    const p = page();
    await p.click('[data-testid=new-chat]');
    if (!(await p.locator('[data-testid=models-panel]').isVisible())) await p.click('[data-testid=open-models]');
    const dir = join(ROOT, 'test/models/tiny');
    await p.setInputFiles('[data-testid=model-files]', [join(dir, 'config.json'), join(dir, 'model.safetensors')]);
    // Named after the weights file ("model") → "Imported model".
    const card = p.locator('[data-testid=models-panel] li', { hasText: 'Imported model' });
    await card.waitFor({ timeout: 30_000 });
    await card.getByRole('button', { name: 'Use' }).click();
    await p.waitForFunction(() => (document.querySelector('[data-testid=model-picker]') as HTMLSelectElement).selectedOptions[0]?.textContent === 'Imported model');
    await p.click('button[aria-label="Close the panel"]');
    await p.locator('[data-testid=composer]').fill('Hello there');
    await p.locator('[data-testid=composer]').press('Enter');
    await p.waitForFunction(() => {
      const m = [...document.querySelectorAll<HTMLElement>('[data-testid=message][data-role=assistant]')].at(-1);
      return m?.dataset.status === 'done' || m?.dataset.status === 'error';
    }, null, { timeout: 60_000 });
    const stats = await p.locator('[data-testid=reply-stats]').last().textContent();
    expect(stats).toMatch(/\d+ tokens/);
    // The tiny model's window is 128 tokens.
    expect(await p.locator('[data-testid=live-stats]').textContent()).toContain('/ 128 tokens');
  });

  it('refuses a model URL that is not https', async () => {
    const p = page();
    await p.click('[data-testid=open-models]');
    await p.fill('input[type=url]', 'http://example.com/gpt2/');
    await p.click('button:has-text("Check and download")');
    const alert = p.locator('[data-testid=models-panel] [role=alert]');
    await alert.waitFor({ timeout: 5000 });
    expect(await alert.textContent()).toMatch(/https/);
  });

  it('on a static host without COOP/COEP: isolated through the service worker; downloads with progress, cancel, resume and a size check', async () => {
    // A copy of the tiny test model to download from this origin, sent slowly; and a path whose
    // HEAD claims 2 GB, to get the confirmation before a large download.
    await stageModel(distB, join(ROOT, 'test/models/tiny'), 'tiny');
    await stageModel(distB, join(ROOT, 'test/models/tiny'), 'huge');
    const host = await serveStatic(distB, { safetensorsBytesPerSecond: 2e6, headSizes: { '/models/huge/model.safetensors': 2e9 } });
    const other = await launch();
    try {
      const p = other.page;
      await p.goto(host.url);
      // First visit: no headers, so not isolated; once the service worker controls the page it
      // reloads it once, now with the headers the worker adds.
      await p.waitForFunction(() => crossOriginIsolated, null, { timeout: 60_000 });
      await waitForApp(p);
      expect(await p.locator('[data-testid=isolation]').textContent()).toContain('isolated');
      const headers = await p.evaluate(async () => {
        const r = await fetch('./');
        return [r.headers.get('cross-origin-opener-policy'), r.headers.get('cross-origin-embedder-policy')];
      });
      expect(headers).toEqual(['same-origin', 'require-corp']);

      await p.click('[data-testid=open-models]');
      const panel = p.locator('[data-testid=models-panel]');
      // A large download asks first, with its size and the free space.
      await p.fill('input[type=url]', `${host.url}models/huge/`);
      await p.click('button:has-text("Check and download")');
      const dialog = p.locator('dialog[open]');
      await dialog.waitFor({ timeout: 10_000 });
      const text = await dialog.textContent();
      expect(text).toContain('2.0 GB');
      expect(text).toMatch(/may still store .+B/);
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      expect(await p.locator('dialog[open]').count()).toBe(0);
      expect(await panel.locator('[data-testid=custom-download]').count()).toBe(0);

      // A small one starts at once; cancel it half-way, then resume it.
      await p.fill('input[type=url]', `${host.url}models/tiny/`);
      await p.click('button:has-text("Check and download")');
      const progress = panel.locator('[data-testid=custom-download] [data-testid=download-progress]');
      await progress.waitFor({ timeout: 10_000 });
      await p.waitForFunction(() => Number(document.querySelector('[data-testid=custom-download] [role=progressbar]')?.getAttribute('aria-valuenow') ?? 0) >= 30, null, { timeout: 30_000 });
      expect(await progress.textContent()).toMatch(/MB \/ 6\.7 MB/);
      await progress.getByRole('button', { name: 'Cancel' }).click();
      await progress.waitFor({ state: 'detached', timeout: 10_000 });
      const card = panel.locator('li', { hasText: 'Interrupted at' });
      await card.waitFor({ timeout: 10_000 });
      await card.getByRole('button', { name: 'Resume' }).click();
      const done = panel.locator('li', { hasText: 'from a URL' });
      await done.waitFor({ timeout: 30_000 });
      expect(await done.getByRole('button', { name: 'Use' }).count()).toBe(1);
      await p.screenshot({ path: join(await ensureResults(), 'models.png') });
    } finally {
      await other.close();
      await host.stop();
    }
  });
});
