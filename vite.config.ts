import { readFileSync } from 'node:fs';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import type { Plugin } from 'vite';
import { defineConfig } from 'vite';
import { VitePWA } from 'vite-plugin-pwa';

// Cross-origin isolation (SharedArrayBuffer for the worker pool) on the dev server and on
// `vite preview`. Static hosts that cannot set headers get them from the service worker (src/sw.ts).
// require-corp is fine for Hugging Face downloads: the store fetches them in CORS mode and HF's
// CDN answers with CORS headers.
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

// No page of another origin may frame the app (clickjacking). frame-ancestors only works as a
// header (browsers ignore it in the page's <meta> policy); X-Frame-Options for older browsers.
// The service worker adds the same two on static hosts (src/sw.ts).
const framing = {
  'Content-Security-Policy': "frame-ancestors 'none'",
  'X-Frame-Options': 'DENY',
};

const pkg = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')) as { version: string };

/** The dev server's HMR client talks over a websocket: allow it in the CSP during `vite` only. */
function devCsp(): Plugin {
  return {
    name: 'dev-csp-websocket',
    apply: 'serve',
    transformIndexHtml(html) {
      return html.replace(/connect-src 'self'/, "connect-src 'self' ws: wss:");
    },
  };
}

export default defineConfig({
  plugins: [
    svelte(),
    devCsp(),
    VitePWA({
      strategies: 'injectManifest',
      srcDir: 'src',
      filename: 'sw.ts',
      registerType: 'prompt',
      // src/main.ts registers through `virtual:pwa-register`: no inline script (the CSP forbids it).
      injectRegister: false,
      injectManifest: {
        globPatterns: ['**/*.{js,css,html,svg,png,ico,webmanifest,woff2}'],
        // The bundled model goes to the model store (IndexedDB), never to the precache.
        globIgnores: ['models/**', '**/*.safetensors'],
        // The tokenizer's BPE ranks make a large chunk; it must be precached for offline use.
        maximumFileSizeToCacheInBytes: 16 * 1024 * 1024,
        rollupFormat: 'es',
      },
      manifest: {
        name: 'GPT-2 Offline Chat',
        short_name: 'GPT-2 Chat',
        description: 'Chat with GPT-2-family models entirely in your browser, offline.',
        id: './',
        start_url: './',
        scope: './',
        display: 'standalone',
        background_color: '#101418',
        theme_color: '#1f6feb',
        icons: [
          { src: 'icons/icon-192.png', sizes: '192x192', type: 'image/png', purpose: 'any' },
          { src: 'icons/icon-512.png', sizes: '512x512', type: 'image/png', purpose: 'any' },
          { src: 'icons/maskable-192.png', sizes: '192x192', type: 'image/png', purpose: 'maskable' },
          { src: 'icons/maskable-512.png', sizes: '512x512', type: 'image/png', purpose: 'maskable' },
        ],
      },
      devOptions: { enabled: false },
    }),
  ],
  define: {
    __APP_VERSION__: JSON.stringify(pkg.version),
    // Every build is a new version for the service worker's update prompt; tests pin it.
    __BUILD_ID__: JSON.stringify(process.env.APP_BUILD_ID ?? new Date().toISOString().slice(0, 16).replace('T', ' ')),
  },
  worker: { format: 'es' },
  build: {
    target: 'es2022',
    chunkSizeWarningLimit: 4096,
  },
  server: { headers: { ...isolation, ...framing } },
  preview: { headers: { ...isolation, ...framing } },
});
