import type { makeApi } from "../api/client";
import type { Session } from "../lib/auth";
import type { Prefs } from "../lib/storage";

/** What every screen is given by the App: who is signed in, the API, the display preferences,
 * the services granted at sign-in and whether the user may operate on callbacks. */
export interface Ctx {
  session: Session;
  api: ReturnType<typeof makeApi>;
  prefs: Prefs;
  setPrefs: (p: Prefs) => void;
  services: string[];
  operator: boolean;
}
