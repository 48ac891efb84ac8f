// A real OpenID Connect provider for the tests (node `oidc-provider`, a devDependency of the
// admin console): one public client (Authorization Code + PKCE S256, no secret), the provider's
// development login form (any password), consent skipped as for a first-party console, and JWT
// access tokens for the requested resource indicator (its `aud`) that carry the user's roles as
// `realm_access.roles` (as Keycloak nests them) and granted services as `services`.
//
//   node tests/console/oidc_provider.mjs --port 9000 --client-id callback-console \
//     --redirect-uri http://127.0.0.1:8080/console/ --audience urn:callback:admin-api \
//     --keys keys.json --users users.json
//
// keys.json: {"keys": [private JWKs]} (the signing keys; restart with other keys to rotate).
// users.json: {"sam": {"roles": [...], "services": [...], "access_token_ttl": 600}}.
// Prints "listening <issuer>" when ready, then one line per request: method and path, never a
// query string, body or token.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const console_dir = new URL("../../services/admin-console/", import.meta.url);
const resolved = createRequire(new URL("package.json", console_dir)).resolve("oidc-provider");
const { default: Provider } = await import(pathToFileURL(resolved).href);

const { values: args } = parseArgs({
  options: {
    port: { type: "string" },
    host: { type: "string", default: "127.0.0.1" },
    "client-id": { type: "string" },
    "redirect-uri": { type: "string", multiple: true },
    audience: { type: "string" },
    keys: { type: "string" },
    users: { type: "string" },
  },
});
for (const name of ["port", "client-id", "redirect-uri", "audience", "keys", "users"]) {
  if (!args[name]) {
    console.error(`--${name} is required`);
    process.exit(2);
  }
}

const issuer = `http://${args.host}:${args.port}`;
const users = JSON.parse(readFileSync(args.users, "utf8"));
const jwks = JSON.parse(readFileSync(args.keys, "utf8"));
const RESOURCE_SCOPE = "callback";

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: args["client-id"],
      token_endpoint_auth_method: "none",
      application_type: "web",
      grant_types: ["authorization_code"],
      response_types: ["code"],
      redirect_uris: args["redirect-uri"],
    },
  ],
  jwks,
  cookies: { keys: [jwks.keys[0].kid ?? "test-cookie-key"] },
  claims: { openid: ["sub"], profile: ["preferred_username"] },
  scopes: ["openid", "profile"],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf ?? args.audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({
        scope: RESOURCE_SCOPE,
        audience: resource,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  async findAccount(_ctx, id) {
    return { accountId: id, claims: async () => ({ sub: id, preferred_username: id }) };
  },
  async extraTokenClaims(_ctx, token) {
    if (token.kind !== "AccessToken" || !token.accountId) return undefined;
    const user = users[token.accountId] ?? {};
    return { realm_access: { roles: user.roles ?? [] }, services: user.services ?? [] };
  },
  ttl: {
    AccessToken: (_ctx, token) => users[token.accountId]?.access_token_ttl ?? 600,
  },
  // a first-party console: the user is not asked to consent (Keycloak: "Consent required" off)
  async loadExistingGrant(ctx) {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid profile");
    for (const resource of Object.keys(ctx.oidc.resourceServers ?? {})) {
      grant.addResourceScope(resource, RESOURCE_SCOPE);
    }
    await grant.save();
    return grant;
  },
});

provider.use(async (ctx, next) => {
  console.log(`${ctx.method} ${ctx.path}`);
  await next();
});

const server = provider.listen(Number(args.port), args.host, () => console.log(`listening ${issuer}`));
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
