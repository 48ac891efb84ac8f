// Development sign-in: a pasted token, or `#token=<JWT>` in the address (moved to
// sessionStorage and removed from the address bar). The token is never logged.

const KEY = "callback-console.token";

export interface Session {
  token: string;
  sub: string;
  roles: string[];
  services: string[];
  exp: number | null;
}

export const OPERATOR_ROLES = ["callback_supervisor", "callback_administrator"];

function base64UrlDecode(part: string): string {
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const binary = atob(b64);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** The session a token gives (its claims read, not verified: the API verifies), or null. */
export function sessionFromToken(raw: string): Session | null {
  const token = raw.trim().replace(/^Bearer\s+/i, "");
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(base64UrlDecode(parts[1]!)) as Record<string, unknown>;
    const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : typeof v === "string" ? [v] : []);
    return {
      token,
      sub: String(claims.sub ?? ""),
      roles: list(claims.roles),
      services: list(claims.services),
      exp: typeof claims.exp === "number" ? claims.exp : null,
    };
  } catch {
    return null;
  }
}

export function canOperate(session: Session | null): boolean {
  return !!session && session.roles.some((r) => OPERATOR_ROLES.includes(r));
}

export function expired(session: Session, now = Date.now()): boolean {
  return session.exp !== null && session.exp * 1000 <= now;
}

/** Takes `#token=` out of the address (replaceState) into sessionStorage; returns the session. */
export function takeTokenFromLocation(loc: Location, history: History, storage: Storage): Session | null {
  const hash = loc.hash.startsWith("#") ? loc.hash.slice(1) : loc.hash;
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (token === null) return null;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(history.state, "", loc.pathname + loc.search + (rest ? `#${rest}` : ""));
  const session = sessionFromToken(token);
  if (session) storage.setItem(KEY, session.token);
  return session;
}

export function storedSession(storage: Storage): Session | null {
  const token = storage.getItem(KEY);
  const session = token ? sessionFromToken(token) : null;
  return session && !expired(session) ? session : null;
}

export function saveSession(storage: Storage, session: Session): void {
  storage.setItem(KEY, session.token);
}

export function clearSession(storage: Storage): void {
  storage.removeItem(KEY);
}
