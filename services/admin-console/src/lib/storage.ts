// Per-user preferences (localStorage) and dialog drafts (sessionStorage, survive a sign-in).
import type { TimePrefs } from "./time";

export const COLUMNS = [
  { key: "state", label: "State" },
  { key: "desired_time", label: "Desired Callback Time" },
  { key: "customer_number", label: "Phone Number" },
  { key: "service_name", label: "Service Name" },
] as const;
export type ColumnKey = (typeof COLUMNS)[number]["key"];

export interface Prefs extends TimePrefs {
  columns: Record<ColumnKey, boolean>;
}

export const DEFAULT_PREFS: Prefs = {
  hour24: true,
  utc: false,
  columns: { state: true, desired_time: true, customer_number: true, service_name: true },
};

const prefsKey = (user: string) => `callback-console.prefs.${user}`;

export function loadPrefs(storage: Storage, user: string): Prefs {
  try {
    const raw = storage.getItem(prefsKey(user));
    if (!raw) return DEFAULT_PREFS;
    const stored = JSON.parse(raw) as Partial<Prefs>;
    return {
      ...DEFAULT_PREFS,
      ...stored,
      columns: { ...DEFAULT_PREFS.columns, ...(stored.columns ?? {}) },
    };
  } catch {
    return DEFAULT_PREFS;
  }
}

export function savePrefs(storage: Storage, user: string, prefs: Prefs): void {
  storage.setItem(prefsKey(user), JSON.stringify(prefs));
}

const draftKey = (name: string) => `callback-console.draft.${name}`;

export function loadDraft<T>(name: string): T | null {
  try {
    const raw = sessionStorage.getItem(draftKey(name));
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

export function saveDraft(name: string, value: unknown): void {
  sessionStorage.setItem(draftKey(name), JSON.stringify(value));
}

export function clearDraft(name: string): void {
  sessionStorage.removeItem(draftKey(name));
}
