// The session: the bearer token in sessionStorage and what its claims say. Development sign-in:
// a pasted token, or `#token=<JWT>` in the address (moved to sessionStorage and removed from the
// address bar); production: an OIDC issuer's access token (lib/oidc.ts), whose claims may have
// other names (nested ones as dotted paths). The token is never logged.

const KEY = "callback-console.token";
const ISSUER_KEY = "callback-console.issuer";

/** Which claims name the user, the roles and the granted services (dotted paths allowed). */
export interface ClaimNames {
  username: string;
  roles: string;
  services: string;
}

/** An OIDC issuer and the claim names of the tokens it issues. */
export interface IssuerClaims {
  issuer: string;
  claims: ClaimNames;
}

const DEVELOPMENT_CLAIMS: ClaimNames = { username: "sub", roles: "roles", services: "services" };

/** A claim by its whole name, else by its dotted path (`realm_access.roles`), as admin-api reads it. */
export function claim(claims: Record<string, unknown>, name: string): unknown {
  if (name in claims) return claims[name];
  let value: unknown = claims;
  for (const part of name.split(".")) {
    if (typeof value !== "object" || value === null || !(part in value)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

export interface Session {
  token: string;
  sub: string;
  roles: string[];
  services: string[];
  exp: number | null;
}


function base64UrlDecode(part: string): string {
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
  const binary = atob(b64);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** The session a token gives (its claims read, not verified: the API verifies), or null. A token
 * of `issuer` is read with its claim names, any other with the development ones. */
export function sessionFromToken(raw: string, issuer: IssuerClaims | null = null): Session | null {
  const token = raw.trim().replace(/^Bearer\s+/i, "");
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(base64UrlDecode(parts[1]!)) as Record<string, unknown>;
    const names = issuer && claims.iss === issuer.issuer ? issuer.claims : DEVELOPMENT_CLAIMS;
    const list = (v: unknown) => (Array.isArray(v) ? v.map(String) : typeof v === "string" ? [v] : []);
    return {
      token,
      sub: String(claim(claims, names.username) ?? ""),
      roles: list(claim(claims, names.roles)),
      services: list(claim(claims, names.services)),
      exp: typeof claims.exp === "number" ? claims.exp : null,
    };
  } catch {
    return null;
  }
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
  const session = token ? sessionFromToken(token, rememberedIssuer(storage)) : null;
  return session && !expired(session) ? session : null;
}

/** Keeps the issuer's claim names for the next page load (read before the config arrives). */
export function rememberIssuer(storage: Storage, issuer: IssuerClaims | null): void {
  if (issuer) storage.setItem(ISSUER_KEY, JSON.stringify(issuer));
  else storage.removeItem(ISSUER_KEY);
}

function rememberedIssuer(storage: Storage): IssuerClaims | null {
  try {
    const raw = storage.getItem(ISSUER_KEY);
    return raw ? (JSON.parse(raw) as IssuerClaims) : null;
  } catch {
    return null;
  }
}

export function saveSession(storage: Storage, session: Session): void {
  storage.setItem(KEY, session.token);
}

export function clearSession(storage: Storage): void {
  storage.removeItem(KEY);
}
