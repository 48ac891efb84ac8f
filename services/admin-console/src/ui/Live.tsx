// The Callback tab's live updates: the stream's connection for the signed-in user, and its
// small indicator.
import { useEffect, useRef, useState } from "preact/hooks";
import type { LiveCallbackEvent } from "../api/client";
import { connectLive, type LiveStatus } from "../lib/live";
import type { Ctx } from "./context";

export interface LiveCallbacks {
  onCallback: (event: LiveCallbackEvent) => void;
  /** Read the list again: events may have been missed (also when the stream is refused). */
  onReload: () => void;
}

/** Follows the live stream while the tab is shown; the handlers may change between renders. */
export function useLive(ctx: Ctx, callbacks: LiveCallbacks): LiveStatus {
  const [status, setStatus] = useState<LiveStatus>("connecting");
  const handlers = useRef(callbacks);
  handlers.current = callbacks;
  const token = ctx.session.token;
  useEffect(() => {
    let previous: LiveStatus = "connecting";
    const live = connectLive(
      { token: () => token },
      {
        onCallback: (event) => handlers.current.onCallback(event),
        onReload: () => handlers.current.onReload(),
        onStatus: (next) => {
          // (re)connected: what happened before the stream joined is read with the list
          if (next === "live" && previous !== "live") handlers.current.onReload();
          previous = next;
          setStatus(next);
        },
        // the list's request meets the same 401 and leads to the sign-in
        onUnauthorized: () => handlers.current.onReload(),
      },
    );
    return () => live.close();
  }, [token]);
  return status;
}

const LABELS: Record<LiveStatus, string> = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  stopped: "Not live",
};

export function LiveIndicator({ status }: { status: LiveStatus }) {
  const title =
    status === "live"
      ? "Rows update as callbacks change"
      : "Live updates are not connected: the list is read again every few seconds";
  return (
    <span class={`live-indicator live-${status}`} data-testid="live-status" title={title}>
      <span class="live-dot" aria-hidden="true"></span>
      {LABELS[status]}
    </span>
  );
}
