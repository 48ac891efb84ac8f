import { useState } from "preact/hooks";
import type { SearchRow } from "../api/client";
import { problemView } from "../lib/problems";
import { formatTime } from "../lib/time";
import type { Ctx } from "./App";

/** Tools: Callback Search (by callback id or phone number) and the user's queues. */
export function Tools({ ctx }: { ctx: Ctx }) {
  const [q, setQ] = useState("");
  const [rows, setRows] = useState<SearchRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const search = async (e: Event) => {
    e.preventDefault();
    const term = q.trim();
    if (!term) return setError("Type a callback ID or a phone number.");
    const { data, error: problem, response } = await ctx.api.GET("/api/v1/search", { params: { query: { q: term } } });
    if (data) {
      setRows(data.items);
      setError(null);
    } else if (response.status !== 401) {
      setError(problemView(response.status, problem, ["q"]).fields.q ?? problemView(response.status, problem).message);
    }
  };
  const t = (iso: string) => formatTime(iso, ctx.prefs);
  return (
    <div class="tools">
      <section aria-labelledby="search-title" class="card">
        <h2 id="search-title">Callback Search</h2>
        <form onSubmit={search} class="toolbar">
          <label for="search-q">Callback ID or phone number</label>
          <input id="search-q" value={q} maxLength={100} onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
          <button type="submit" class="primary">
            Search
          </button>
        </form>
        {error && (
          <p class="field-error" role="alert">
            {error}
          </p>
        )}
        {rows && (
          <div class="scroll">
            <table class="search-results" aria-label="Search results">
              <thead>
                <tr>
                  <th scope="col">"From" Number</th>
                  <th scope="col">State</th>
                  <th scope="col">Route Point</th>
                  <th scope="col">Last Updated Time</th>
                  <th scope="col">Queue</th>
                  <th scope="col">"To" Number</th>
                  <th scope="col">Callback ID</th>
                  <th scope="col">Scheduled Time</th>
                  <th scope="col">Diagnostic Data</th>
                </tr>
              </thead>
              <tbody>
                {rows.length === 0 && (
                  <tr>
                    <td colSpan={9} class="empty">
                      No callback found.
                    </td>
                  </tr>
                )}
                {rows.map((r) => (
                  <tr>
                    <td class="nowrap">{r.from_number ? <span class="mono">{r.from_number}</span> : "—"}</td>
                    <td>
                      {r.state}
                      {r.result && <span class="result block">({r.result})</span>}
                      {r.cancel_pending && <span class="badge">cancel pending</span>}
                    </td>
                    <td>{r.route_point ?? "—"}</td>
                    <td class="time">{t(r.last_updated_time)}</td>
                    <td>{r.queue ?? r.service_name}</td>
                    <td class="mono nowrap">{r.to_number ?? r.customer_number}</td>
                    <td class="mono small nowrap">{r.callback_id}</td>
                    <td class="time">{t(r.scheduled_time)}</td>
                    <td class="small">
                      {Object.keys(r.diagnostic_data).length ? (
                        <code>{JSON.stringify(r.diagnostic_data)}</code>
                      ) : (
                        "—"
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <section aria-labelledby="queues-title" class="card">
        <h2 id="queues-title">Your queues</h2>
        {ctx.session.services.includes("*") && <p class="hint">You are granted every service; those with stored settings:</p>}
        <ul class="queues">
          {ctx.services.map((s) => (
            <li>{s}</li>
          ))}
          {ctx.services.length === 0 && <li class="muted">None listed.</li>}
        </ul>
      </section>
    </div>
  );
}
