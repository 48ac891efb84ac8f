// Production sign-in: OpenID Connect Authorization Code with PKCE (S256), the console being a
// public client (no secret). The issuer and client come from /console/config.json. The code
// verifier, state and nonce wait in sessionStorage while the browser is at the identity
// provider; the code and state are taken out of the address bar as soon as the console is back.
import { sessionFromToken, type IssuerClaims, type Session } from "./auth";

export interface ConsoleConfig {
  sign_in: string; // "oidc" or "token" (pasted development tokens)
  issuer?: string;
  client_id?: string;
  scope?: string;
  resource?: string;
  claims?: IssuerClaims["claims"];
}

export interface Discovery {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
}

interface Pending {
  state: string;
  nonce: string;
  verifier: string;
  redirect_uri: string;
  return_hash: string;
}

const PENDING = "callback-console.oidc-pending";
const RESPONSE_PARAMS = ["code", "state", "iss", "session_state", "error", "error_description", "error_uri"];

export function base64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(bytes = 32): string {
  return base64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** The S256 code challenge of a code verifier (RFC 7636). */
export async function codeChallenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64Url(new Uint8Array(digest));
}

/** Where the identity provider sends the browser back: the console's own address. */
export function redirectUri(loc: Location): string {
  return `${loc.origin}/console/`;
}

export async function discover(issuer: string, fetchFn: typeof fetch = fetch): Promise<Discovery> {
  const url = `${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
  const answer = await fetchFn(url);
  if (!answer.ok) throw new Error(`The identity provider could not be reached (${answer.status}).`);
  const doc = (await answer.json()) as Partial<Discovery>;
  if (doc.issuer !== issuer || !doc.authorization_endpoint || !doc.token_endpoint) {
    throw new Error("The identity provider's discovery document does not match the configured issuer.");
  }
  return doc as Discovery;
}

function oidcConfig(config: ConsoleConfig): Required<Pick<ConsoleConfig, "issuer" | "client_id">> & ConsoleConfig {
  if (config.sign_in !== "oidc" || !config.issuer || !config.client_id) {
    throw new Error("This console is not configured for sign-in at an identity provider.");
  }
  return config as Required<Pick<ConsoleConfig, "issuer" | "client_id">> & ConsoleConfig;
}

/** The authorization request to send the browser to; the PKCE verifier, state and nonce are
 * kept in `storage` for the way back. */
export async function beginSignIn(
  config: ConsoleConfig,
  loc: Location,
  storage: Storage,
  fetchFn: typeof fetch = fetch,
): Promise<string> {
  const c = oidcConfig(config);
  const provider = await discover(c.issuer, fetchFn);
  const pending: Pending = {
    state: randomString(),
    nonce: randomString(),
    verifier: randomString(48),
    redirect_uri: redirectUri(loc),
    return_hash: loc.hash.includes("token=") ? "" : loc.hash,
  };
  storage.setItem(PENDING, JSON.stringify(pending));
  const url = new URL(provider.authorization_endpoint);
  const params: Record<string, string> = {
    response_type: "code",
    client_id: c.client_id,
    redirect_uri: pending.redirect_uri,
    scope: c.scope ?? "openid",
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await codeChallenge(pending.verifier),
    code_challenge_method: "S256",
  };
  if (c.resource) params.resource = c.resource;
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  return url.toString();
}

/** Whether the address is the identity provider's answer to an authorization request. */
export function isAuthResponse(loc: Location): boolean {
  const params = new URLSearchParams(loc.search);
  return params.has("state") && (params.has("code") || params.has("error"));
}

function decodeClaims(jwt: string): Record<string, unknown> | null {
  const part = jwt.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    return null;
  }
}

/** Completes a sign-in the identity provider sent back: the code and state leave the address
 * bar first, then the code is exchanged (with the PKCE verifier) for the access token. */
export async function completeSignIn(
  config: ConsoleConfig,
  loc: Location,
  history: History,
  storage: Storage,
  fetchFn: typeof fetch = fetch,
): Promise<Session> {
  const params = new URLSearchParams(loc.search);
  const raw = storage.getItem(PENDING);
  storage.removeItem(PENDING);
  const pending = raw ? (JSON.parse(raw) as Pending) : null;
  const rest = new URLSearchParams(loc.search);
  for (const name of RESPONSE_PARAMS) rest.delete(name);
  const query = rest.toString();
  history.replaceState(null, "", loc.pathname + (query ? `?${query}` : "") + (pending?.return_hash ?? ""));

  const c = oidcConfig(config);
  if (!pending || params.get("state") !== pending.state) {
    throw new Error("This sign-in answer does not belong to a sign-in started here. Sign in again.");
  }
  const error = params.get("error");
  if (error) throw new Error(`The identity provider did not sign you in: ${params.get("error_description") ?? error}.`);
  const iss = params.get("iss");
  if (iss !== null && iss !== c.issuer) throw new Error("The sign-in answer comes from another issuer.");
  const code = params.get("code");
  if (!code) throw new Error("The identity provider sent no authorization code. Sign in again.");

  const provider = await discover(c.issuer, fetchFn);
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code,
    redirect_uri: pending.redirect_uri,
    client_id: c.client_id,
    code_verifier: pending.verifier,
  });
  if (c.resource) body.set("resource", c.resource);
  const answer = await fetchFn(provider.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body,
  });
  const tokens = (await answer.json().catch(() => ({}))) as Record<string, unknown>;
  if (!answer.ok || typeof tokens.access_token !== "string") {
    throw new Error(`The identity provider issued no token (${String(tokens.error ?? answer.status)}). Sign in again.`);
  }
  // the ID token came straight from the token endpoint (TLS): its claims are checked, not its
  // signature (OpenID Connect Core 3.1.3.7); admin-api verifies the access token it is sent
  const id = typeof tokens.id_token === "string" ? decodeClaims(tokens.id_token) : null;
  const audience = id ? (Array.isArray(id.aud) ? id.aud : [id.aud]) : [];
  if (!id || id.nonce !== pending.nonce || id.iss !== c.issuer || !audience.includes(c.client_id)) {
    throw new Error("The identity provider's ID token does not match this sign-in. Sign in again.");
  }
  const session = sessionFromToken(tokens.access_token, issuerClaims(config));
  if (!session) throw new Error("The identity provider's access token is not a JWT that admin-api can verify.");
  return session;
}

/** The claim names of the issuer's tokens, if the deployment has an issuer. */
export function issuerClaims(config: ConsoleConfig | null): IssuerClaims | null {
  return config?.issuer && config.claims ? { issuer: config.issuer, claims: config.claims } : null;
}
