/// <reference lib="webworker" />
// The service worker (built by vite-plugin-pwa's injectManifest strategy, which replaces
// `self.__WB_MANIFEST` with the list of built files).
//
// 1. Precaches the app shell (HTML, JS, CSS, icons, the workers) so a reload with no network works.
//    The bundled model is not precached: the model store keeps it in IndexedDB.
// 2. Adds the cross-origin isolation headers (COOP/COEP/CORP) to every same-origin response it
//    serves — the coi-serviceworker technique — so SharedArrayBuffer works on static hosts that
//    cannot set headers. (src/main.ts reloads once when the page is not isolated yet.) The page
//    itself also gets `frame-ancestors 'none'` and X-Frame-Options: no other site may frame it.
// 3. Waits for the page's go-ahead (`SKIP_WAITING`, sent by the update prompt) before a new version
//    takes over.

export {};

interface PrecacheEntry {
  url: string;
  revision: string | null;
}

declare const self: ServiceWorkerGlobalScope & { __WB_MANIFEST: Array<PrecacheEntry | string> };

const entries: PrecacheEntry[] = [
  // The manifest lists the manifest's icons twice: keep one entry per URL.
  ...new Map(self.__WB_MANIFEST.map((e) => (typeof e === 'string' ? { url: e, revision: null } : e)).map((e) => [e.url, e])).values(),
];

function hash(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0).toString(36);
}

const PREFIX = 'gpt2-chat-shell-';
/** One cache per deployed version: its name changes whenever any precached file does. */
const CACHE = PREFIX + hash(entries.map((e) => `${e.url}@${e.revision ?? ''}`).join('\n'));
const scope = new URL(self.registration.scope);
const urlOf = (u: string): string => new URL(u, scope).href;
const PRECACHED = new Set(entries.map((e) => urlOf(e.url)));
const INDEX = urlOf('index.html');

const ISOLATION: Record<string, string> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // Bypass the HTTP cache: a stale file under a new revision would poison this version.
      await Promise.all(
        entries.map(async (e) => {
          const res = await fetch(new Request(urlOf(e.url), { cache: 'reload', credentials: 'same-origin' }));
          if (!res.ok) throw new Error(`precache: ${e.url} answered ${res.status}`);
          await cache.put(urlOf(e.url), res);
        }),
      );
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name.startsWith(PREFIX) && name !== CACHE) await caches.delete(name);
      if (self.registration.navigationPreload) await self.registration.navigationPreload.disable().catch(() => undefined);
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('message', (event) => {
  if ((event.data as { type?: string } | null)?.type === 'SKIP_WAITING') void self.skipWaiting();
});

/** For the page: a header, because browsers ignore frame-ancestors in a <meta> policy. */
const NO_FRAMING: Record<string, string> = {
  'Content-Security-Policy': "frame-ancestors 'none'",
  'X-Frame-Options': 'DENY',
};

/**
 * The response with the isolation headers added, and for a page the framing ones (opaque
 * responses cannot be changed, nor need it).
 */
function isolate(res: Response, page = false): Response {
  if (res.type === 'opaque' || res.type === 'opaqueredirect' || res.status === 0) return res;
  const headers = new Headers(res.headers);
  for (const [k, v] of Object.entries(ISOLATION)) headers.set(k, v);
  if (page) for (const [k, v] of Object.entries(NO_FRAMING)) headers.set(k, v);
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

async function respond(request: Request): Promise<Response> {
  const url = new URL(request.url);
  url.hash = '';
  const cache = await caches.open(CACHE);
  if (request.mode === 'navigate') {
    // The app is one page: every navigation inside the scope gets the precached shell.
    const shell = await cache.match(INDEX);
    if (shell) return isolate(shell, true);
    return isolate(await fetch(request), true);
  }
  if (PRECACHED.has(url.href)) {
    const hit = await cache.match(url.href);
    if (hit) return isolate(hit);
  }
  return isolate(await fetch(request));
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  // Cross-origin requests (model downloads from Hugging Face) and non-GETs pass straight through.
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  // An "only-if-cached" request from devtools cannot be replayed outside same-origin mode.
  if (request.cache === 'only-if-cached' && request.mode !== 'same-origin') return;
  event.respondWith(respond(request));
});
