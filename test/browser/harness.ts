// Shared helpers for the browser tests: build the app once, serve it with `vite preview` (the
// COOP/COEP headers of vite.config.ts included) on a free port, and drive Debian's Chromium
// through playwright-core with a fresh profile. Never downloads a browser.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import type { PreviewServer } from 'vite';
import { preview } from 'vite';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = '/usr/bin/chromium';
export const RESULTS = join(ROOT, 'test-results');
const BUNDLED = join(ROOT, 'public/models/shakespeare');

const run = promisify(execFile);

export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`bash tools/setup.sh\` (or apt-get install -y chromium).`);
  }
}

/** The bundled model must exist: the app loads it through the store from its own origin. */
export function requireBundledModel(): void {
  for (const f of ['config.json', 'model.safetensors']) {
    if (!existsSync(join(BUNDLED, f))) {
      throw new Error(`The bundled model is missing: ${join('public/models/shakespeare', f)} (train it with tools/train_shakespeare.py).`);
    }
  }
}

/** `vite build` into a fresh temporary folder; returns it. */
export async function buildApp(env: Record<string, string> = {}): Promise<string> {
  const outDir = await mkdtemp(join(tmpdir(), 'gpt2-chat-dist-'));
  try {
    await run(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'], {
      cwd: ROOT,
      // Vitest sets NODE_ENV=test, which would make Vite build a development bundle (no service worker).
      env: { ...process.env, NODE_ENV: 'production', ...env },
      maxBuffer: 64 << 20,
      timeout: 300_000,
    });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new Error(`vite build failed:\n${err.stderr || err.stdout || err.message}`);
  }
  if (!existsSync(join(outDir, 'models/shakespeare/model.safetensors'))) {
    throw new Error('the build has no models/shakespeare/model.safetensors (public/models/shakespeare is copied as is)');
  }
  return outDir;
}

/** Copies a model folder (config.json + model.safetensors) to `<dist>/models/<name>/`. */
export async function stageModel(dist: string, from: string, name: string): Promise<void> {
  const to = join(dist, 'models', name);
  await mkdir(to, { recursive: true });
  await cp(from, to, { recursive: true });
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port'))));
    });
  });
}

export interface Served {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** `vite preview` of `dist` (with vite.config.ts, so with its headers) on `port`. */
export async function serve(dist: string, port?: number): Promise<Served> {
  const p = port ?? (await freePort());
  const server: PreviewServer = await preview({
    root: ROOT,
    configFile: join(ROOT, 'vite.config.ts'),
    logLevel: 'warn',
    build: { outDir: dist },
    preview: { port: p, strictPort: true, host: '127.0.0.1', open: false },
  });
  const url = `http://127.0.0.1:${p}/`;
  return {
    url,
    port: p,
    stop: () => server.close(),
  };
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** Everything the page logged (errors especially), for failure messages. */
  logs: string[];
  close(): Promise<void>;
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Debian's Chromium with a fresh temporary profile. */
export async function launch(options: { width?: number; height?: number; colorScheme?: 'light' | 'dark' } = {}): Promise<Browser> {
  requireChromium();
  const profile = await mkdtemp(join(tmpdir(), 'gpt2-chat-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: options.width ?? 1280, height: options.height ?? 860 },
    colorScheme: options.colorScheme ?? 'light',
    serviceWorkers: 'allow',
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  return {
    context,
    page,
    logs,
    close: async () => {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true }).catch(() => undefined);
    },
  };
}

export async function ensureResults(): Promise<string> {
  await mkdir(RESULTS, { recursive: true });
  return RESULTS;
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.css': 'text/css',
  '.json': 'application/json',
  '.webmanifest': 'application/manifest+json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
};

/**
 * A plain static host that cannot set COOP/COEP (like GitHub Pages): only the service worker
 * can make the app cross-origin isolated there.
 */
export interface StaticOptions {
  port?: number;
  /** Sends .safetensors files at about this rate (in 64 KiB pieces), to watch a download progress. */
  safetensorsBytesPerSecond?: number;
  /** Sizes a HEAD request reports for these paths (to make a small file look large). */
  headSizes?: Record<string, number>;
}

export async function serveStatic(dir: string, options: StaticOptions = {}): Promise<Served> {
  const { createServer: createHttpServer } = await import('node:http');
  const { readFile: read } = await import('node:fs/promises');
  const { extname, normalize } = await import('node:path');
  const p = options.port ?? (await freePort());
  const server = createHttpServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path.endsWith('/') ? `${path}index.html` : path);
    read(file).then(
      async (body) => {
        const type = TYPES[extname(file)] ?? 'application/octet-stream';
        if (req.method === 'HEAD') {
          res.writeHead(200, { 'Content-Type': type, 'Content-Length': options.headSizes?.[path] ?? body.length });
          res.end();
          return;
        }
        // Range requests (a resumed download).
        let start = 0;
        const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
        if (range && Number(range[1]) < body.length) start = Number(range[1]);
        const headers: Record<string, string | number> = { 'Content-Type': type, 'Content-Length': body.length - start, 'Accept-Ranges': 'bytes' };
        if (start > 0) headers['Content-Range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
        res.writeHead(start > 0 ? 206 : 200, headers);
        const rate = options.safetensorsBytesPerSecond;
        if (!rate || !file.endsWith('.safetensors')) {
          res.end(body.subarray(start));
          return;
        }
        const piece = 64 << 10;
        for (let at = start; at < body.length && !res.destroyed; at += piece) {
          res.write(body.subarray(at, Math.min(body.length, at + piece)));
          await new Promise((r) => setTimeout(r, (1000 * piece) / rate));
        }
        res.end();
      },
      () => {
        res.writeHead(404);
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(p, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${p}/`,
    port: p,
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
