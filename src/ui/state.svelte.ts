// The reactive state the components read. The controllers in src/app mutate these proxies
// (ChatController → chat, ModelManager → models); Svelte re-renders whatever depends on them.
import { createChatState } from '../app/chat.ts';
import { createModelsState } from '../app/models.ts';

export const chat = $state(createChatState());
export const models = $state(createModelsState());

export const pwa = $state({
  /** A new version is installed and waits for the user's go-ahead. */
  needRefresh: false,
  /** The app shell is cached: reloads work offline. */
  offlineReady: false,
  update: null as null | (() => Promise<void>),
});

export const ui = $state({
  sidebarOpen: false,
  panel: null as null | 'settings' | 'models',
  /** Short announcements for screen readers (role=status). */
  announcement: '',
  toast: null as null | { text: string; kind: 'info' | 'error' },
});
