// The typed client of /api/v1 (openapi-fetch over the generated schema.d.ts).
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Callback = components["schemas"]["CallbackView"];
export type CallbackPage = components["schemas"]["CallbackPage"];
export type SearchRow = components["schemas"]["SearchRow"];
export type ServiceView = components["schemas"]["ServiceView"];
export type Availability = components["schemas"]["Availability"];
export type TimelineEntry = components["schemas"]["TimelineEntry"];
export type LiveCallbackEvent = components["schemas"]["LiveCallbackEvent"];

export type Api = ReturnType<typeof createClient<paths>>;

/** A client sending `token`; `onUnauthorized` is called on any 401. */
export function makeApi(token: () => string | null, onUnauthorized: () => void): Api {
  const api = createClient<paths>({ baseUrl: "" });
  const auth: Middleware = {
    onRequest({ request }) {
      const t = token();
      if (t) request.headers.set("Authorization", `Bearer ${t}`);
      return request;
    },
    onResponse({ response }) {
      if (response.status === 401) onUnauthorized();
      return response;
    },
  };
  api.use(auth);
  return api;
}
