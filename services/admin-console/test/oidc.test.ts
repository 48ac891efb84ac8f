import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { claim, sessionFromToken } from "../src/lib/auth";
import { beginSignIn, codeChallenge, completeSignIn, isAuthResponse, type ConsoleConfig } from "../src/lib/oidc";

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
const jwt = (claims: object) => `${b64({ alg: "RS256", kid: "k" })}.${b64(claims)}.sig`;
const ISSUER = "https://sso.example.com/realms/cc";
const CONFIG: ConsoleConfig = {
  sign_in: "oidc",
  issuer: ISSUER,
  client_id: "callback-console",
  scope: "openid profile",
  resource: "urn:callback:admin-api",
  claims: { username: "preferred_username", roles: "realm_access.roles", services: "services" },
};
const DISCOVERY = {
  issuer: ISSUER,
  authorization_endpoint: `${ISSUER}/protocol/openid-connect/auth`,
  token_endpoint: `${ISSUER}/protocol/openid-connect/token`,
};

function memoryStorage(): Storage {
  const store = new Map<string, string>();
  return {
    getItem: (k: string) => store.get(k) ?? null,
    setItem: (k: string, v: string) => void store.set(k, v),
    removeItem: (k: string) => void store.delete(k),
    get length() {
      return store.size;
    },
  } as unknown as Storage;
}

function provider(token: (body: URLSearchParams) => Record<string, unknown>) {
  const requests: { url: string; body: URLSearchParams | null }[] = [];
  const fetchFn = (async (url: string, init?: RequestInit) => {
    const body = init?.body ? new URLSearchParams(String(init.body)) : null;
    requests.push({ url, body });
    const json = url.endsWith("/.well-known/openid-configuration") ? DISCOVERY : token(body!);
    return new Response(JSON.stringify(json), { status: "error" in json ? 400 : 200 });
  }) as unknown as typeof fetch;
  return { fetchFn, requests };
}

const at = (href: string) => new URL(href) as unknown as Location;

describe("PKCE", () => {
  it("derives the S256 challenge: base64url(SHA-256(verifier)), no padding", async () => {
    const verifier = "dBjftJeZ4CVP-mJ92K-1wTFQ16mPG-L_QEYpybA-Rns";
    const expected = createHash("sha256").update(verifier).digest("base64url");
    expect(await codeChallenge(verifier)).toBe(expected);
    expect(expected).toBe("aJR9WDUOZmmXBftgwDeTw8MDaNwKpeHlr9BjzR7tRAM");
  });
});

describe("OIDC sign-in", () => {
  async function started() {
    const storage = memoryStorage();
    const { fetchFn } = provider(() => ({}));
    const url = new URL(await beginSignIn(CONFIG, at("https://admin.example.com/console/#tools"), storage, fetchFn));
    return { storage, url };
  }

  it("sends the browser to the issuer's authorization endpoint with PKCE, state and nonce", async () => {
    const { storage, url } = await started();
    expect(url.origin + url.pathname).toBe(DISCOVERY.authorization_endpoint);
    const p = url.searchParams;
    expect(p.get("response_type")).toBe("code");
    expect(p.get("client_id")).toBe("callback-console");
    expect(p.get("redirect_uri")).toBe("https://admin.example.com/console/");
    expect(p.get("scope")).toBe("openid profile");
    expect(p.get("resource")).toBe("urn:callback:admin-api");
    expect(p.get("code_challenge_method")).toBe("S256");
    const pending = JSON.parse(storage.getItem("callback-console.oidc-pending")!);
    expect(p.get("state")).toBe(pending.state);
    expect(p.get("nonce")).toBe(pending.nonce);
    expect(p.get("code_challenge")).toBe(await codeChallenge(pending.verifier));
    expect(pending.verifier.length).toBeGreaterThanOrEqual(43);
    expect(url.toString()).not.toContain(pending.verifier);
  });

  it("exchanges the code with the verifier and takes code and state out of the address", async () => {
    const { storage, url } = await started();
    const pending = JSON.parse(storage.getItem("callback-console.oidc-pending")!);
    const access = jwt({
      iss: ISSUER,
      preferred_username: "sam",
      realm_access: { roles: ["callback_supervisor", "offline_access"] },
      services: ["billing"],
      exp: 4102444800,
    });
    const id = jwt({ iss: ISSUER, aud: "callback-console", nonce: pending.nonce });
    const { fetchFn, requests } = provider(() => ({ access_token: access, id_token: id, token_type: "Bearer" }));
    const back = at(`https://admin.example.com/console/?code=abc&state=${url.searchParams.get("state")}&iss=${ISSUER}`);
    expect(isAuthResponse(back)).toBe(true);
    let address = "";
    const history = { replaceState: (_s: unknown, _t: string, u: string) => (address = u) } as unknown as History;
    const session = await completeSignIn(CONFIG, back, history, storage, fetchFn);
    expect(address).toBe("/console/#tools");
    expect([session.sub, session.roles, session.services]).toEqual([
      "sam",
      ["callback_supervisor", "offline_access"],
      ["billing"],
    ]);
    const exchange = requests.find((r) => r.url === DISCOVERY.token_endpoint)!.body!;
    expect(Object.fromEntries(exchange)).toEqual({
      grant_type: "authorization_code",
      code: "abc",
      redirect_uri: "https://admin.example.com/console/",
      client_id: "callback-console",
      code_verifier: pending.verifier,
      resource: "urn:callback:admin-api",
    });
    expect(storage.getItem("callback-console.oidc-pending")).toBeNull();
  });

  it("refuses an answer with another state or an ID token for another nonce", async () => {
    const noHistory = { replaceState: () => undefined } as unknown as History;
    const { storage } = await started();
    const { fetchFn, requests } = provider(() => ({}));
    const forged = at("https://admin.example.com/console/?code=abc&state=not-ours");
    await expect(completeSignIn(CONFIG, forged, noHistory, storage, fetchFn)).rejects.toThrow("does not belong");
    expect(requests).toHaveLength(0);

    const again = await started();
    const otherNonce = provider(() => ({
      access_token: jwt({ iss: ISSUER }),
      id_token: jwt({ iss: ISSUER, aud: "callback-console", nonce: "replayed" }),
    }));
    const back = at(`https://admin.example.com/console/?code=abc&state=${again.url.searchParams.get("state")}`);
    await expect(completeSignIn(CONFIG, back, noHistory, again.storage, otherNonce.fetchFn)).rejects.toThrow(
      "ID token",
    );
  });

  it("says what the issuer answered when it refused", async () => {
    const { storage, url } = await started();
    const { fetchFn } = provider(() => ({}));
    const state = url.searchParams.get("state");
    const back = at(`https://admin.example.com/console/?error=access_denied&error_description=aborted&state=${state}`);
    const history = { replaceState: () => undefined } as unknown as History;
    await expect(completeSignIn(CONFIG, back, history, storage, fetchFn)).rejects.toThrow("did not sign you in: aborted");
  });
});

describe("claim names", () => {
  it("reads the issuer's tokens with its claim names and development tokens with the usual ones", () => {
    const issuer = { issuer: ISSUER, claims: CONFIG.claims! };
    const oidc = sessionFromToken(jwt({ iss: ISSUER, preferred_username: "sam", realm_access: { roles: ["r"] } }), issuer)!;
    expect([oidc.sub, oidc.roles]).toEqual(["sam", ["r"]]);
    const dev = sessionFromToken(jwt({ sub: "dev", roles: ["callback_monitor"], services: ["*"] }), issuer)!;
    expect([dev.sub, dev.roles, dev.services]).toEqual(["dev", ["callback_monitor"], ["*"]]);
  });
  it("finds a claim by its whole name before its dotted path", () => {
    const claims = { "https://example.com/roles": ["a"], realm_access: { roles: ["b"] } };
    expect(claim(claims, "https://example.com/roles")).toEqual(["a"]);
    expect(claim(claims, "realm_access.roles")).toEqual(["b"]);
    expect(claim(claims, "realm_access.groups")).toBeUndefined();
  });
});
