import { useEffect, useMemo, useState } from "preact/hooks";
import type { SearchRow, ServiceView } from "../api/client";
import { problemView } from "../lib/problems";
import { latestRead } from "../lib/reads";
import { can } from "../lib/roles";
import { formatTime } from "../lib/time";
import type { Ctx } from "./context";
import { OverdueWarning } from "./Overdue";
import { ServicesPage } from "./Services";

/** Tools: Callback Search (by callback id or phone number) and the user's queues. */
export function Tools({ ctx }: { ctx: Ctx }) {
  const [editing, setEditing] = useState<string | null>(null);
  const [q, setQ] = useState("");
  const [rows, setRows] = useState<SearchRow[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const begin = useMemo(latestRead, []);
  const search = async (e: Event) => {
    e.preventDefault();
    const stillLatest = begin();
    const term = q.trim();
    if (!term) return setError("Type a callback ID or a phone number.");
    const { data, error: problem, response } = await ctx.api.GET("/api/v1/search", { params: { query: { q: term } } });
    if (!stillLatest()) return; // searched again since
    if (data) {
      setRows(data.items);
      setError(null);
    } else if (response.status !== 401) {
      setError(problemView(response.status, problem, ["q"]).fields.q ?? problemView(response.status, problem).message);
    }
  };
  const t = (iso: string) => formatTime(iso, ctx.prefs);
  if (editing !== null) return <ServicesPage ctx={ctx} initial={editing} onBack={() => setEditing(null)} />;
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
                  <th scope="col" class="nowrap">
                    Route Point
                  </th>
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
                      <span class="state-cell">
                        {r.state}
                        {r.overdue && <OverdueWarning id={`search-${r.callback_id}`} message={r.overdue_message} />}
                      </span>
                      {r.result && <span class="result block">({r.result})</span>}
                      {r.cancel_pending && <span class="badge">cancel pending</span>}
                    </td>
                    <td class="mono nowrap">{r.route_point ?? "—"}</td>
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
      <Queues ctx={ctx} onEdit={setEditing} />
    </div>
  );
}

/** The user's queues (services) with their main settings; administrators open the Services page. */
function Queues({ ctx, onEdit }: { ctx: Ctx; onEdit: (name: string) => void }) {
  const [items, setItems] = useState<ServiceView[] | null>(null);
  const configure = can(ctx.session, "configure");
  useEffect(() => {
    ctx.api.GET("/api/v1/services").then(({ data }) => data && setItems(data.items));
  }, [ctx.api]);
  const known = new Set((items ?? []).map((v) => v.settings.name));
  // services of the token the API lists no settings for (none stored, granted by name)
  const rest = ctx.services.filter((s) => !known.has(s));
  const open = (s: ServiceView["settings"]) =>
    Object.values(s.office_hours ?? {}).filter((openings) => openings.length).length;
  return (
    <section aria-labelledby="queues-title" class="card">
      <h2 id="queues-title">Your queues</h2>
      {ctx.session.services.includes("*") && <p class="hint">You are granted every service; those with stored settings:</p>}
      {!items && <p class="muted">Loading…</p>}
      {items && items.length + rest.length === 0 && <p class="muted">None listed.</p>}
      {items && items.length + rest.length > 0 && (
        <table class="queues" aria-label="Your queues">
          <thead>
            <tr>
              <th scope="col">Service</th>
              <th scope="col">Time zone</th>
              <th scope="col">Slot length × capacity</th>
              <th scope="col">Open days</th>
              <th scope="col">Settings</th>
              {configure && (
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {items.map(({ settings: s, stored }) => (
              <tr>
                <td>{s.name}</td>
                <td>{s.time_zone ?? "UTC"}</td>
                <td class="nowrap">
                  {s.slot_length_minutes ?? 15} min × {s.slot_capacity ?? 10}
                </td>
                <td>{open(s)} of 7</td>
                <td>{stored ? "stored" : "defaults"}</td>
                {configure && (
                  <td>
                    <button class="link" aria-label={`Edit settings of ${s.name}`} onClick={() => onEdit(s.name)}>
                      Edit settings
                    </button>
                  </td>
                )}
              </tr>
            ))}
            {rest.map((name) => (
              <tr>
                <td>{name}</td>
                <td colSpan={4} class="muted">
                  —
                </td>
                {configure && (
                  <td>
                    <button class="link" aria-label={`Edit settings of ${name}`} onClick={() => onEdit(name)}>
                      Edit settings
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {configure && (
        <p>
          <button onClick={() => onEdit(ctx.services[0] ?? "")}>Services page</button>
        </p>
      )}
    </section>
  );
}
