import { describe, expect, it } from "vitest";
import type { CallbackPage, LiveCallbackEvent } from "../src/api/client";
import { DEFAULT_FILTERS } from "../src/lib/filters";
import {
  SseParser,
  applyLiveEvent,
  backoffDelay,
  connectLive,
  pollInterval,
  type LiveStatus,
  type SseMessage,
} from "../src/lib/live";

const parseAll = (chunks: string[]) => {
  const parser = new SseParser();
  return chunks.flatMap((chunk) => parser.push(chunk));
};

describe("the SSE parser", () => {
  const wire = 'id: 0.1\nevent: ready\ndata: {}\n\n: keep-alive\n\nid: 0.2\nevent: callback\ndata: {"a":1}\n\n';
  const expected: SseMessage[] = [
    { event: "ready", data: "{}", id: "0.1" },
    { event: "callback", data: '{"a":1}', id: "0.2" },
  ];

  it("reads messages, skips comments", () => {
    expect(parseAll([wire])).toEqual(expected);
  });

  it("gives the same messages however the stream is cut", () => {
    for (let size = 1; size < wire.length; size += 3) {
      const chunks = [];
      for (let i = 0; i < wire.length; i += size) chunks.push(wire.slice(i, i + size));
      expect(parseAll(chunks)).toEqual(expected);
    }
  });

  it("takes CRLF and CR line ends, even a CRLF cut in two", () => {
    expect(parseAll(["id: 7\r", "\nevent: x\r\ndata: a\rdata: b\r\n\r\n"])).toEqual([{ event: "x", data: "a\nb", id: "7" }]);
  });

  it("keeps the last id for later messages; an id alone dispatches nothing but counts", () => {
    expect(parseAll(["id: 5\n\n", "data: one\n\n", "id: 6\ndata: two\n\n", "data:three\n\n"])).toEqual([
      { event: "message", data: "one", id: "5" },
      { event: "message", data: "two", id: "6" },
      { event: "message", data: "three", id: "6" },
    ]);
  });

  it("keeps a message without its blank line until it comes", () => {
    const parser = new SseParser();
    expect(parser.push("event: callback\ndata: {}\n")).toEqual([]);
    expect(parser.push("\n")).toEqual([{ event: "callback", data: "{}", id: null }]);
  });
});

/** A response whose body sends `text`, then ends. */
const sse = (text: string, status = 200) =>
  new Response(status === 200 ? new Blob([text]).stream() : JSON.stringify({ status }), {
    status,
    headers: { "content-type": status === 200 ? "text/event-stream" : "application/problem+json" },
  });

const event = (id: string, n: number) => `id: ${id}\nevent: callback\ndata: {"callback_id":"cb-${n}"}\n\n`;

function follow(responses: Response[]) {
  const requests: Record<string, string>[] = [];
  const seen: string[] = [];
  const statuses: LiveStatus[] = [];
  const delays: number[] = [];
  let reloads = 0;
  let unauthorized = 0;
  const done = new Promise<void>((resolve) => {
    const live = connectLive(
      {
        token: () => "tok",
        fetch: async (_url, init) => {
          requests.push({ ...(init?.headers as Record<string, string>) });
          const next = responses.shift();
          if (!next) {
            live.close();
            throw new DOMException("aborted", "AbortError");
          }
          return next;
        },
        backoff: (attempt) => {
          delays.push(attempt);
          return 0;
        },
        sleep: async () => undefined,
      },
      {
        onCallback: (e) => seen.push((e as unknown as { callback_id: string }).callback_id),
        onReload: () => reloads++,
        onStatus: (s) => {
          statuses.push(s);
          if (s === "stopped") resolve();
        },
        onUnauthorized: () => unauthorized++,
      },
    );
  });
  return { done, requests, seen, statuses, delays, get reloads() { return reloads; }, get unauthorized() { return unauthorized; } };
}

describe("following the stream", () => {
  it("sends the token, resumes after the last id it got, and backs off while failing", async () => {
    const run = follow([
      sse(`id: 0.0\nevent: ready\ndata: {}\n\n${event("0.1", 1)}${event("0.2", 2)}`),
      new Response("down", { status: 503 }),
      sse(`${event("0.3", 3)}id: 0.3\nevent: ready\ndata: {}\n\n`),
    ]);
    await run.done;
    expect(run.requests[0]).toEqual({ Accept: "text/event-stream", Authorization: "Bearer tok" });
    expect(run.requests.slice(1).map((h) => h["Last-Event-ID"])).toEqual(["0.2", "0.2", "0.3"]);
    expect(run.seen).toEqual(["cb-1", "cb-2", "cb-3"]);
    // after a live stream ended: at once (attempt 0); after a failure: longer
    expect(run.delays).toEqual([0, 1, 0]);
    expect(run.statuses).toEqual(["connecting", "live", "reconnecting", "reconnecting", "live", "reconnecting", "stopped"]);
  });

  it("stops on 401 and says so", async () => {
    const run = follow([sse("id: 0.0\nevent: ready\ndata: {}\n\n"), sse("", 401)]);
    await run.done;
    expect(run.unauthorized).toBe(1);
    expect(run.requests).toHaveLength(2);
    expect(run.statuses.at(-1)).toBe("stopped");
  });

  it("asks for a reload on a reload event, and starts afresh when its id is refused", async () => {
    const run = follow([
      sse(`id: 0.0\nevent: ready\ndata: {}\n\nid: 0.9\nevent: reload\ndata: {"reason":"behind"}\n\n`),
      sse("", 422),
      sse("id: 0.9\nevent: ready\ndata: {}\n\n"),
    ]);
    await run.done;
    expect(run.reloads).toBe(2);
    expect(run.requests.map((h) => h["Last-Event-ID"])).toEqual([undefined, "0.9", undefined, "0.9"]);
  });

  it("waits 0.5-1 s, doubling up to 30 s", () => {
    expect(backoffDelay(0, () => 0)).toBe(500);
    expect(backoffDelay(0, () => 1)).toBe(1000);
    expect(backoffDelay(3, () => 1)).toBe(8000);
    expect(backoffDelay(12, () => 1)).toBe(30_000);
  });
});

const row = (id: string, state: string, updated: string) =>
  ({ id, state, result: null, updated_at: updated, service_name: "billing" }) as unknown as CallbackPage["items"][number];
const page = (): CallbackPage =>
  ({
    items: [row("a", "QUEUED", "2026-01-01T10:00:00Z"), row("b", "SCHEDULED", "2026-01-01T10:00:00Z")],
    next_cursor: null,
    page_size: 250,
    range_from: "2026-01-01T00:00:00Z",
    range_to: "2026-01-02T00:00:00Z",
  }) as CallbackPage;
const live = (id: string, state: string, updated: string | null, desired = "2026-01-01T12:00:00Z") =>
  ({
    callback_id: id,
    state,
    service_name: "billing",
    desired_time: desired,
    callback: updated === null ? null : row(id, state, updated),
  }) as unknown as LiveCallbackEvent;

describe("a live event on the shown page", () => {
  it("replaces a shown row in place", () => {
    const before = page();
    const out = applyLiveEvent(before, live("a", "ROUTING", "2026-01-01T10:00:01Z"), DEFAULT_FILTERS);
    expect(out.page!.items.map((cb) => cb.state)).toEqual(["ROUTING", "SCHEDULED"]);
    expect(before.items[0]!.state).toBe("QUEUED");
    expect([out.reload, out.refetch]).toEqual([false, null]);
  });

  it("keeps a newer row than the event's", () => {
    const before = page();
    const out = applyLiveEvent(before, live("a", "SCHEDULED", "2026-01-01T09:00:00Z"), DEFAULT_FILTERS);
    expect(out.page).toBe(before);
  });

  it("reads a shown row by id when the event lacks its record", () => {
    expect(applyLiveEvent(page(), live("b", "QUEUED", null), DEFAULT_FILTERS).refetch).toBe("b");
  });

  it("reloads when a row leaves the state filter or a new one may enter the range", () => {
    const scheduledOnly = { ...DEFAULT_FILTERS, state: "SCHEDULED" as const };
    expect(applyLiveEvent(page(), live("b", "QUEUED", "2026-01-01T10:00:01Z"), scheduledOnly).reload).toBe(true);
    expect(applyLiveEvent(page(), live("new", "SCHEDULED", "2026-01-01T10:00:01Z"), DEFAULT_FILTERS).reload).toBe(true);
    expect(applyLiveEvent(page(), live("new", "QUEUED", null), scheduledOnly).reload).toBe(false);
    const later = live("new", "SCHEDULED", null, "2026-01-03T00:00:00Z");
    expect(applyLiveEvent(page(), later, DEFAULT_FILTERS).reload).toBe(false);
    const elsewhere = { ...DEFAULT_FILTERS, service: "sales" };
    expect(applyLiveEvent(page(), live("new", "SCHEDULED", null), elsewhere).reload).toBe(false);
  });
});

describe("the fallback poll", () => {
  it("is slow while live, quicker while not, and a stored override wins", () => {
    expect(pollInterval("live", null)).toBe(60_000);
    expect(pollInterval("reconnecting", null)).toBe(5_000);
    const storage = { getItem: () => "3600000" };
    expect(pollInterval("reconnecting", storage)).toBe(3_600_000);
    expect(pollInterval("live", { getItem: () => "nonsense" })).toBe(60_000);
  });
});
