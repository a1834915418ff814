/// <reference types="vite-plugin-pwa/vanillajs" />
// The page's entry: theme, service worker (offline shell, update prompt, cross-origin isolation
// on hosts that cannot send the headers), then the Svelte app (src/ui/App.svelte).
import { mount } from 'svelte';
import { registerSW } from 'virtual:pwa-register';
import App from './ui/App.svelte';
import './ui/app.css';
import { pwa } from './ui/state.svelte.ts';
import { applyTheme, savedTheme } from './ui/theme.ts';

applyTheme(savedTheme());

// Framing by another page is refused by headers (vite.config.ts, src/sw.ts); but on a static host
// the first load of a frame comes before any service worker (and a third-party frame gets its
// own, partitioned one), so the app also declines to start inside a frame.
const framed = window.top !== window.self;
if (framed) document.getElementById('app')!.textContent = 'This app does not run inside another page. Open it in its own tab.';

const COI_RELOAD_KEY = 'gpt2-chat:coi-reload';

if ('serviceWorker' in navigator && import.meta.env.PROD && !framed) {
  // A static host without COOP/COEP headers: once our service worker controls the page, it adds
  // them, so reload once to become cross-origin isolated (the coi-serviceworker technique).
  if (!window.crossOriginIsolated) {
    navigator.serviceWorker.addEventListener('controllerchange', () => {
      if (window.crossOriginIsolated || sessionStorage.getItem(COI_RELOAD_KEY)) return;
      sessionStorage.setItem(COI_RELOAD_KEY, '1');
      location.reload();
    });
  } else {
    sessionStorage.removeItem(COI_RELOAD_KEY);
  }
  const updateSW = registerSW({
    immediate: true,
    onNeedRefresh() {
      pwa.needRefresh = true;
    },
    onOfflineReady() {
      pwa.offlineReady = true;
    },
    onRegisterError(e: unknown) {
      console.warn('service worker registration failed', e);
    },
  });
  pwa.update = () => updateSW(true);
}

if (!framed) mount(App, { target: document.getElementById('app')! });
