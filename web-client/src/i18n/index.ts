// The one place user-visible text comes from: t('key', {param}).
// The language is the stored choice (localStorage "amphi.lang"), else the
// browser's preferred language when we have it, else English.
import { en, type MessageKey, type Messages } from './en';
import { fr } from './fr';

export type { MessageKey } from './en';

export const LANGUAGES = { en, fr } as const satisfies Record<string, Messages>;
export type Language = keyof typeof LANGUAGES;

const STORAGE_KEY = 'amphi.lang';

function isLanguage(x: string | null | undefined): x is Language {
  return !!x && Object.prototype.hasOwnProperty.call(LANGUAGES, x);
}

function detect(): Language {
  try {
    const stored = localStorage.getItem(STORAGE_KEY);
    if (isLanguage(stored)) return stored;
  } catch {
    // Storage may be disabled: fall through.
  }
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = tag.toLowerCase().split('-')[0];
    if (isLanguage(base)) return base;
  }
  return 'en';
}

let current: Language = detect();

export function language(): Language {
  return current;
}

/** Sets (and remembers) the language; views built afterwards use it. */
export function setLanguage(lang: Language): void {
  current = lang;
  document.documentElement.lang = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not remembered: fine.
  }
}

/** The text for `key` in the current language, with `{param}`s filled in. */
export function t(key: MessageKey, params?: Record<string, string | number>): string {
  const text = LANGUAGES[current][key] ?? en[key];
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (m, name: string) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : m,
  );
}

document.documentElement.lang = current;
