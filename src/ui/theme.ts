// Light and dark themes: the system preference unless the user picked one (saved locally).
export type ThemeChoice = 'system' | 'light' | 'dark';
const KEY = 'gpt2-chat:theme';

export function savedTheme(): ThemeChoice {
  const v = typeof localStorage !== 'undefined' ? localStorage.getItem(KEY) : null;
  return v === 'light' || v === 'dark' ? v : 'system';
}

export function effectiveTheme(choice: ThemeChoice): 'light' | 'dark' {
  if (choice !== 'system') return choice;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

export function applyTheme(choice: ThemeChoice): void {
  const t = effectiveTheme(choice);
  document.documentElement.dataset.theme = t;
  if (choice === 'system') localStorage.removeItem(KEY);
  else localStorage.setItem(KEY, choice);
}

/** Follows the system while the choice is 'system'. */
export function watchSystemTheme(get: () => ThemeChoice): void {
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => {
    if (get() === 'system') applyTheme('system');
  });
}
