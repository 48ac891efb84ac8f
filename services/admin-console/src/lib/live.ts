// Live updates: GET /api/v1/callbacks/events (Server-Sent Events) read with fetch() and a
// streaming body, since EventSource cannot send the Authorization header; reconnects with
// backoff and resumes with Last-Event-ID.
import type { CallbackPage, LiveCallbackEvent } from "../api/client";
import type { ListFilters } from "./filters";

export const EVENTS_PATH = "/api/v1/callbacks/events";

export interface SseMessage {
  event: string;
  data: string;
  /** The stream's last event id when the message was dispatched (null: none yet). */
  id: string | null;
}

/** An incremental text/event-stream parser (the WHATWG rules: lines end with LF, CRLF or CR;
 * `:` starts a comment; data lines are joined with LF; a blank line dispatches; an `id` field
 * sets the last event id even on a message without data). */
export class SseParser {
  lastEventId: string | null = null;
  private line = "";
  private afterCR = false;
  private data: string[] = [];
  private hasData = false;
  private event = "";

  push(chunk: string): SseMessage[] {
    const out: SseMessage[] = [];
    for (const ch of chunk) {
      if (this.afterCR) {
        this.afterCR = false;
        if (ch === "\n") continue; // CRLF: the line already ended at CR
      }
      if (ch === "\r" || ch === "\n") {
        this.afterCR = ch === "\r";
        const message = this.endLine();
        if (message) out.push(message);
      } else {
        this.line += ch;
      }
    }
    return out;
  }

  private endLine(): SseMessage | null {
    const line = this.line;
    this.line = "";
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.lastEventId = value;
    return null;
  }

  private dispatch(): SseMessage | null {
    const message = this.hasData ? { event: this.event || "message", data: this.data.join("\n"), id: this.lastEventId } : null;
    this.data = [];
    this.hasData = false;
    this.event = "";
    return message;
  }
}

export type LiveStatus = "connecting" | "live" | "reconnecting" | "stopped";

export interface LiveHandlers {
  onCallback: (event: LiveCallbackEvent) => void;
  /** Events were lost (fell behind, or no longer kept): read the list again. */
  onReload: () => void;
  onStatus: (status: LiveStatus) => void;
  /** The token was refused (401): the stream stops. */
  onUnauthorized: () => void;
}

export interface LiveOptions {
  token: () => string | null;
  fetch?: typeof fetch;
  /** Milliseconds to wait before reconnect number `attempt` (0, 1, ...). */
  backoff?: (attempt: number) => number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** 0.5-1 s, doubling up to 15-30 s. */
export function backoffDelay(attempt: number, random = Math.random): number {
  const base = Math.min(30_000, 1000 * 2 ** Math.min(attempt, 5));
  return base * (0.5 + random() / 2);
}

function sleepFor(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Follows the live stream until `close()`: reconnects with backoff, resumes after the last
 * event id it got; a 422 (an id the server does not take) starts afresh and asks for a reload. */
export function connectLive(options: LiveOptions, handlers: LiveHandlers): { close: () => void } {
  const doFetch = options.fetch ?? fetch.bind(globalThis);
  const backoff = options.backoff ?? ((attempt: number) => backoffDelay(attempt));
  const sleep = options.sleep ?? sleepFor;
  const stop = new AbortController();
  let lastEventId: string | null = null;

  async function once(): Promise<"unauthorized" | "again" | "live-ended"> {
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    const token = options.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (lastEventId !== null) headers["Last-Event-ID"] = lastEventId;
    const response = await doFetch(EVENTS_PATH, { headers, signal: stop.signal, cache: "no-store" });
    if (response.status === 401) return "unauthorized";
    if (response.status === 422 && lastEventId !== null) {
      lastEventId = null;
      handlers.onReload();
      return "again";
    }
    if (!response.ok || !response.body) return "again";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    let wasLive = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return wasLive ? "live-ended" : "again";
      for (const message of parser.push(value)) {
        if (message.id !== null) lastEventId = message.id;
        if (message.event === "ready") {
          wasLive = true;
          handlers.onStatus("live");
        } else if (message.event === "callback") {
          handlers.onCallback(JSON.parse(message.data) as LiveCallbackEvent);
        } else if (message.event === "reload") {
          handlers.onReload();
        }
      }
    }
  }

  (async () => {
    handlers.onStatus("connecting");
    let attempt = 0;
    while (!stop.signal.aborted) {
      let outcome: Awaited<ReturnType<typeof once>> = "again";
      try {
        outcome = await once();
      } catch {
        if (stop.signal.aborted) break;
      }
      if (outcome === "unauthorized") {
        handlers.onStatus("stopped");
        handlers.onUnauthorized();
        return;
      }
      if (stop.signal.aborted) break;
      handlers.onStatus("reconnecting");
      attempt = outcome === "live-ended" ? 0 : attempt + 1;
      await sleep(backoff(attempt), stop.signal);
    }
    handlers.onStatus("stopped");
  })();

  return { close: () => stop.abort() };
}

/** How often the list is read again anyway: a slow fallback while live, more often while the
 * stream is down. `localStorage["callback-console.poll-ms"]` overrides both (tests). */
export const POLL_WHILE_LIVE_MS = 60_000;
export const POLL_WHILE_DOWN_MS = 5_000;
export const POLL_OVERRIDE_KEY = "callback-console.poll-ms";

export function pollInterval(status: LiveStatus, storage: Pick<Storage, "getItem"> | null): number {
  const override = Number(storage?.getItem(POLL_OVERRIDE_KEY) ?? NaN);
  if (Number.isFinite(override) && override > 0) return override;
  return status === "live" ? POLL_WHILE_LIVE_MS : POLL_WHILE_DOWN_MS;
}

export interface LiveOutcome {
  page: CallbackPage | null;
  /** The list should be read again (debounced): a callback may have entered or left it. */
  reload: boolean;
  /** A shown callback whose record the event lacks: read it by id. */
  refetch: string | null;
}

/** What a live event does to the shown page: a shown row is replaced in place (unless the page
 * holds a newer version); one not shown that the filters and range may select asks for a reload. */
export function applyLiveEvent(page: CallbackPage | null, event: LiveCallbackEvent, filters: ListFilters): LiveOutcome {
  if (!page) return { page, reload: false, refetch: null };
  const index = page.items.findIndex((cb) => cb.id === event.callback_id);
  const stateShown = filters.state === "ALL" || filters.state === event.state;
  if (index >= 0) {
    const fresh = event.callback;
    if (!fresh) return { page, reload: false, refetch: event.callback_id };
    const current = page.items[index]!;
    if (Date.parse(current.updated_at) > Date.parse(fresh.updated_at)) return { page, reload: false, refetch: null };
    const items = page.items.slice();
    items[index] = fresh;
    return { page: { ...page, items }, reload: !stateShown, refetch: null };
  }
  const desired = Date.parse(event.desired_time);
  const inRange = desired >= Date.parse(page.range_from) && desired < Date.parse(page.range_to);
  const serviceShown = filters.service === "ALL" || filters.service === event.service_name;
  return { page, reload: inRange && stateShown && serviceShown, refetch: null };
}
