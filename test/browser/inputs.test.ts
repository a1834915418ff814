// Hostile inputs, in Chromium on the built app: servers that never stop sending, stall, loop or
// fail; a model with NaN weights; a tab closed mid-import; a site that frames the app. The app
// is built with a 3 s download stall timeout (VITE_DOWNLOAD_STALL_MS) so a stall shows at once.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatBytes } from '../../src/app/models.ts';
import { encodeSafetensors, tinyBytes, tinyConfigText, tinyTensors } from '../helpers/model-bytes.ts';
import type { RangeServer } from '../helpers/range-server.ts';
import { startRangeServer } from '../helpers/range-server.ts';
import type { Browser, Served } from './harness.ts';
import { buildApp, freePort, launch, requireBundledModel, requireChromium, serve, serveStatic } from './harness.ts';

const FILE = tinyBytes();
const STALL_MS = 3000;

let dist = '';
let files = '';
let app: Served | null = null;
let srv: RangeServer;
let browser: Browser | null = null;

const page = (): Page => {
  if (!browser) throw new Error('the browser did not start');
  return browser.page;
};

async function waitForApp(p: Page): Promise<void> {
  await p.waitForSelector('[data-testid=composer]', { timeout: 30_000 });
  await p.waitForFunction(() => !document.querySelector('[data-testid=model-picker]')?.hasAttribute('disabled'), null, { timeout: 30_000 });
}

async function openModels(p: Page): Promise<void> {
  if (!(await p.locator('[data-testid=models-panel]').isVisible())) await p.click('[data-testid=open-models]');
  await p.locator('[data-testid=models-panel]').waitFor();
}

const alert = (p: Page) => p.locator('[data-testid=models-panel] > p.error[role=alert]');

/**
 * Starts a download from a URL in the Models panel, confirming the size dialog if it asks (it
 * does when the server does not state the size); returns once it runs or has failed.
 */
async function downloadFrom(p: Page, url: string): Promise<void> {
  await openModels(p);
  await p.fill('input[type=url]', url);
  await p.click('button:has-text("Check and download")');
  const name = url.split('/').at(-2)!;
  const asked = await p.waitForFunction(
    (n) => {
      if (document.querySelector('dialog[open]')) return 'dialog';
      const panel = document.querySelector('[data-testid=models-panel]')!;
      const running = panel.querySelector('[data-testid=custom-download] h3')?.textContent === n;
      const failed = panel.querySelector(':scope > p.error')?.textContent?.startsWith(`Downloading ${n} failed`);
      const stored = [...panel.querySelectorAll('li')].some((li) => li.querySelector('h3')?.textContent === n && li.textContent?.includes('from a URL'));
      return running || failed || stored ? 'started' : null;
    },
    name,
    { timeout: 20_000 },
  );
  if ((await asked.jsonValue()) === 'dialog') await p.locator('dialog[open]').getByRole('button', { name: 'Download' }).click();
}

/** The model store's contents, read straight from IndexedDB: records and bytes per stored file. */
async function storeContents(p: Page): Promise<{ models: Array<{ id: string; fileId: string; size: number }>; downloads: number; imports: number; bytes: Record<string, number> }> {
  return p.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const r = indexedDB.open('gpt2-model-store');
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const all = <T,>(store: string, op: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> =>
      new Promise((resolve, reject) => {
        const r = op(db.transaction(store).objectStore(store));
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
      });
    const models = (await all('models', (s) => s.getAll())) as Array<{ id: string; fileId: string; size: number }>;
    const downloads = await all('downloads', (s) => s.count());
    const imports = await all('imports', (s) => s.count());
    const bytes: Record<string, number> = {};
    await new Promise<void>((resolve, reject) => {
      const r = db.transaction('chunks').objectStore('chunks').openCursor();
      r.onsuccess = () => {
        const c = r.result;
        if (!c) return resolve();
        const fileId = (c.key as [string, number])[0];
        bytes[fileId] = (bytes[fileId] ?? 0) + (c.value as ArrayBuffer).byteLength;
        c.continue();
      };
      r.onerror = () => reject(r.error);
    });
    db.close();
    return { models: models.map(({ id, fileId, size }) => ({ id, fileId, size })), downloads, imports, bytes };
  });
}

/** Bytes of chunks no stored model owns. */
async function unownedBytes(p: Page): Promise<number> {
  const c = await storeContents(p);
  const owned = new Set(c.models.map((m) => m.fileId));
  return Object.entries(c.bytes).filter(([f]) => !owned.has(f)).reduce((a, [, b]) => a + b, 0);
}

describe('hostile inputs in Chromium', () => {
  beforeAll(async () => {
    requireChromium();
    requireBundledModel();
    dist = await buildApp({ APP_BUILD_ID: 'inputs', VITE_DOWNLOAD_STALL_MS: String(STALL_MS) });
    files = await mkdtemp(join(tmpdir(), 'hostile-files-'));
    app = await serve(dist);
    srv = await startRangeServer();
    srv.cors = true; // the app downloads from another origin (another port)
    browser = await launch();
    await page().goto(app.url);
    await waitForApp(page());
  });

  afterAll(async () => {
    await browser?.close();
    await app?.stop().catch(() => undefined);
    await srv?.close();
    for (const d of [dist, files]) if (d) await rm(d, { recursive: true, force: true });
  });

  it('stores exactly the size the file states when a server sends endless bytes without Content-Length', async () => {
    const p = page();
    srv.files.set('/endless/config.json', new TextEncoder().encode(tinyConfigText()));
    srv.special.set('/endless/model.safetensors', { kind: 'endless', prefix: FILE });
    await downloadFrom(p, `${srv.origin}/endless/`);
    const done = p.locator('[data-testid=models-panel] li', { hasText: 'from a URL' }).filter({ hasText: 'endless' });
    await done.waitFor({ timeout: 60_000 });
    await srv.hungUp('/endless/model.safetensors');
    const stored = (await storeContents(p)).models.find((m) => m.id === `url:${srv.origin}/endless/`)!;
    expect(stored.size).toBe(FILE.length);
    expect((await storeContents(p)).bytes[stored.fileId]).toBe(FILE.length);
    // The page hung up (hungUp above): past the file the server sent only what the network
    // stack's buffers took in before that, not an endless stream.
    expect(srv.sent.get('/endless/model.safetensors')!).toBeLessThan(FILE.length + (32 << 20));
  });

  it('fails a stalled download after the stall timeout, keeps it, and resumes it', async () => {
    const p = page();
    srv.files.set('/stall/config.json', new TextEncoder().encode(tinyConfigText()));
    srv.files.set('/stall/model.safetensors', FILE);
    srv.stallNext('/stall/model.safetensors', 5_000_000);
    await downloadFrom(p, `${srv.origin}/stall/`);
    await srv.stalled();
    await p.waitForFunction(() => document.querySelector('[data-testid=models-panel] > p.error')?.textContent?.includes('stalled'), null, { timeout: 30_000 });
    expect(await alert(p).textContent()).toBe(`Downloading stall failed: 127.0.0.1:${srv.origin.split(':')[2]} sent nothing for 3.0 s: the download stalled. It can be resumed.`);
    srv.release();
    const card = p.locator('[data-testid=models-panel] li', { hasText: 'Interrupted at 4.2 MB of 6.7 MB' });
    await card.waitFor({ timeout: 10_000 });
    await card.getByRole('button', { name: 'Resume' }).click();
    await p.locator('[data-testid=models-panel] li', { hasText: 'from a URL' }).filter({ hasText: 'stall' }).waitFor({ timeout: 30_000 });
    expect(srv.requests.filter((r) => r.path === '/stall/model.safetensors' && r.method === 'GET').at(-1)).toMatchObject({ range: `bytes=${4 << 20}-`, status: 206 });
  });

  it('says why a download failed: a redirect loop, a redirect the CSP blocks, an unreachable host, no CORS, a server error', async () => {
    const p = page();
    const config = new TextEncoder().encode(tinyConfigText());
    const failure = async (url: string): Promise<string> => {
      await downloadFrom(p, url);
      const name = url.split('/').at(-2)!;
      await p.waitForFunction((n) => document.querySelector('[data-testid=models-panel] > p.error')?.textContent?.startsWith(`Downloading ${n} failed`), name, { timeout: 30_000 });
      return (await alert(p).textContent())!;
    };
    const host = srv.origin.replace('http://', '');

    srv.files.set('/loop/model.safetensors', FILE);
    srv.special.set('/loop/config.json', { kind: 'redirect', to: '/loop/config.json' });
    expect(await failure(`${srv.origin}/loop/`)).toBe(
      `Downloading loop failed: ${host} redirects the download elsewhere, and following it failed: a redirect loop, or a redirect to a host ` +
        'that is unreachable or does not allow downloads from other sites (CORS); the browser does not say which. The download can be resumed.',
    );

    srv.files.set('/blocked/model.safetensors', FILE);
    srv.special.set('/blocked/config.json', { kind: 'redirect', to: 'http://downgrade.invalid/config.json' });
    // Chromium reports a redirect's violation with the URL before the redirect, so the target is not named.
    expect(await failure(`${srv.origin}/blocked/`)).toBe(
      `Downloading blocked failed: ${host} redirected the download to an address this app's security policy blocks (the browser does not say which): ` +
        'models are downloaded over https (or from this device) only.',
    );

    const port = await freePort();
    expect(await failure(`http://127.0.0.1:${port}/gone/`)).toBe(
      `Downloading gone failed: Cannot reach 127.0.0.1:${port}: the server is down, the address is wrong, or it does not allow downloads from ` +
        'other sites (CORS); the browser does not say which. The download can be resumed.',
    );

    // A server that does not allow other origins (no CORS headers): the browser reports it exactly
    // as it reports an unreachable host, and the message says it cannot tell which.
    const closed = await startRangeServer();
    try {
      closed.files.set('/private/config.json', config);
      closed.files.set('/private/model.safetensors', FILE);
      expect(await failure(`${closed.origin}/private/`)).toBe(
        `Downloading private failed: Cannot reach ${closed.origin.replace('http://', '')}: the server is down, the address is wrong, or it does not allow downloads from ` +
          'other sites (CORS); the browser does not say which. The download can be resumed.',
      );
      expect(closed.requests.some((r) => r.path === '/private/config.json' && r.status === 200)).toBe(true);
    } finally {
      await closed.close();
    }

    srv.files.set('/busy/config.json', config);
    srv.special.set('/busy/model.safetensors', { kind: 'status', status: 503, statusText: 'Service Unavailable' });
    expect(await failure(`${srv.origin}/busy/`)).toBe(`Downloading busy failed: ${host} had a server error (503 Service Unavailable). Try again later; the download can be resumed.`);
  });

  it('refuses a model with NaN weights at import and stores nothing', async () => {
    const p = page();
    const tensors = tinyTensors();
    tensors.find((t) => t.name === 'h.1.mlp.c_proj.weight')!.data[4321] = NaN;
    await writeFile(join(files, 'config.json'), tinyConfigText());
    await writeFile(join(files, 'nan.safetensors'), encodeSafetensors(tensors));
    const before = await storeContents(p);
    await openModels(p);
    await p.setInputFiles('[data-testid=model-files]', [join(files, 'config.json'), join(files, 'nan.safetensors')]);
    await p.waitForFunction(() => document.querySelector('[data-testid=models-panel] > p.error')?.textContent?.startsWith('Importing nan failed'), null, { timeout: 30_000 });
    expect(await alert(p).textContent()).toBe(
      'Importing nan failed: Not a usable GPT-2 model: h.1.mlp.c_proj.weight: holds NaN or infinite values (element 4321); the file cannot be used',
    );
    const after = await storeContents(p);
    expect(after.models).toEqual(before.models);
    expect(after.imports).toBe(0);
    expect(await unownedBytes(p)).toBe(0);
    expect(await p.locator('[data-testid=models-panel] li', { hasText: 'nan' }).count()).toBe(0);
  });

  it('shows what a tab closed mid-import left behind, and clears it', async () => {
    const p = page();
    // A 127 MB model (zeros: valid F16), so the import takes a while.
    const config = { ...JSON.parse(tinyConfigText()), n_embd: 1024, n_head: 16, n_layer: 1, n_positions: 64 };
    await writeFile(join(files, 'config.json'), JSON.stringify(config));
    const big = join(files, 'big.safetensors');
    const { header, size } = zeroModelHeader(config);
    await writeFile(big, header);
    await truncate(big, size);
    const other = await browser!.context.newPage();
    await other.goto(app!.url);
    await waitForApp(other);
    await openModels(other);
    await other.setInputFiles('[data-testid=model-files]', [join(files, 'config.json'), big]);
    await other.waitForFunction(() => Number(document.querySelector('[role=progressbar][aria-label^="Importing"]')?.getAttribute('aria-valuenow') ?? 0) >= 10, null, { timeout: 60_000 });
    await other.close(); // the tab dies mid-import
    const left = await unownedBytes(p);
    expect(left).toBeGreaterThan(8 << 20);
    expect(left).toBeLessThan(size);
    // The panel, opened again, says so; Clear deletes them.
    if (await p.locator('[data-testid=models-panel]').isVisible()) await p.click('button[aria-label="Close the panel"]');
    await openModels(p);
    const line = p.locator('[data-testid=leftovers]');
    await line.waitFor({ timeout: 10_000 });
    expect(await line.textContent()).toContain(`${formatBytes(left)} stored by an import that did not finish.`);
    await line.getByRole('button', { name: 'Clear' }).click();
    await line.waitFor({ state: 'detached', timeout: 10_000 });
    expect(await unownedBytes(p)).toBe(0);
    expect((await storeContents(p)).imports).toBe(0);
  });

  it('refuses to be framed by another site: by headers, by the service worker, and before it has one', async () => {
    const framer = await serveFramer();
    const staticHost = await serveStatic(dist);
    const b = await launch();
    try {
      const p = b.page;
      const framed = async (url: string): Promise<{ frameUrl: string; text: string }> => {
        await p.goto(`${framer.url}?src=${encodeURIComponent(url)}`);
        await p.waitForFunction(() => document.querySelector('iframe')?.dataset.loaded === '1', null, { timeout: 30_000 });
        const frame = p.frames().find((f) => f !== p.mainFrame())!;
        const text = frame.url().startsWith('chrome-error:') ? '' : await frame.evaluate(() => document.body.innerText);
        return { frameUrl: frame.url(), text };
      };
      // vite preview sends frame-ancestors 'none' and X-Frame-Options: DENY.
      expect((await framed(app!.url)).frameUrl).toMatch(/^chrome-error:/);
      // A static host sends neither; before the app's service worker exists the page declines to start.
      const first = await framed(staticHost.url);
      expect(first.frameUrl).toBe(staticHost.url);
      expect(first.text).toContain('This app does not run inside another page.');
      expect(await p.frames()[1].locator('[data-testid=composer]').count()).toBe(0);
      // Once visited, the service worker answers the frame's navigation, with the framing headers.
      await p.goto(staticHost.url);
      await p.waitForFunction(() => crossOriginIsolated, null, { timeout: 60_000 });
      expect((await framed(staticHost.url)).frameUrl).toMatch(/^chrome-error:/);
    } finally {
      await b.close();
      await staticHost.stop();
      await new Promise<void>((r) => framer.server.close(() => r()));
    }
  });
});

/** A page on another origin that frames `?src=` (and marks the frame loaded, blocked or not). */
async function serveFramer(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const src = new URL(req.url ?? '/', 'http://x').searchParams.get('src') ?? '';
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>framer</title><iframe src="${src.replace(/"/g, '&quot;')}" onload="this.dataset.loaded='1'" width="800" height="600"></iframe>`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

/** The header of an F16 GPT-2 for `config` whose values are all zero, and the file's size. */
function zeroModelHeader(config: Record<string, number | string>): { header: Uint8Array; size: number } {
  const d = Number(config.n_embd);
  const shapes: Array<[string, number[]]> = [
    ['wte.weight', [Number(config.vocab_size), d]],
    ['wpe.weight', [Number(config.n_positions), d]],
    ['ln_f.weight', [d]],
    ['ln_f.bias', [d]],
  ];
  for (let l = 0; l < Number(config.n_layer); l++) {
    for (const [n, s] of [
      ['ln_1.weight', [d]], ['ln_1.bias', [d]], ['attn.c_attn.weight', [d, 3 * d]], ['attn.c_attn.bias', [3 * d]],
      ['attn.c_proj.weight', [d, d]], ['attn.c_proj.bias', [d]], ['ln_2.weight', [d]], ['ln_2.bias', [d]],
      ['mlp.c_fc.weight', [d, 4 * d]], ['mlp.c_fc.bias', [4 * d]], ['mlp.c_proj.weight', [4 * d, d]], ['mlp.c_proj.bias', [d]],
    ] as Array<[string, number[]]>) shapes.push([`h.${l}.${n}`, s]);
  }
  const entries: Record<string, unknown> = {};
  let at = 0;
  for (const [name, shape] of shapes) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    entries[name] = { dtype: 'F16', shape, data_offsets: [at, at + bytes] };
    at += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(entries));
  const header = new Uint8Array(8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(json.length), true);
  header.set(json, 8);
  return { header, size: header.length + at };
}
