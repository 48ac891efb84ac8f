import { Fragment } from "preact";
import { useCallback, useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Callback, CallbackPage, TimelineEntry } from "../api/client";
import {
  DEFAULT_FILTERS,
  RANGE_PRESETS,
  SEARCH_FIELDS,
  STATES,
  debounce,
  listQuery,
  type ListFilters,
} from "../lib/filters";
import { COLUMNS, loadDraft } from "../lib/storage";
import { browserTimeZone, displayZone, formatDuration, formatTime, wallTimeToIso } from "../lib/time";
import type { Ctx } from "./App";
import { CreateDialog, EditDialog, RecreateDialog, type DialogDraft } from "./Dialogs";
import { CalendarIcon, ChevronIcon, PencilIcon, RecreateIcon, WarningIcon } from "./icons";
import { OptionsDialog } from "./Options";

const PAGE_SIZE = 250;
/** Interim until live updates (Server-Sent Events) come: the visible page is read again. */
const AUTO_REFRESH_MS = 5000;

type Open =
  | { kind: "create" }
  | { kind: "edit"; callback: Callback }
  | { kind: "recreate"; callback: Callback }
  | { kind: "options" }
  | null;

export function CallbackTab({ ctx }: { ctx: Ctx }) {
  const { api, prefs } = ctx;
  const [filters, setFilters] = useState<ListFilters>(DEFAULT_FILTERS);
  const [typed, setTyped] = useState("");
  const [customFrom, setCustomFrom] = useState("");
  const [customTo, setCustomTo] = useState("");
  const [page, setPage] = useState<CallbackPage | null>(null);
  const [cursors, setCursors] = useState<(string | null)[]>([null]);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [expanded, setExpanded] = useState<Record<string, boolean>>({});
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const cursor = cursors[cursors.length - 1] ?? null;
  const zone = displayZone(prefs);

  // a dialog open when the sign-in lapsed comes back with what was typed
  useEffect(() => {
    const draft = loadDraft<DialogDraft>("dialog");
    if (!draft) return;
    if (draft.kind === "create") setOpen({ kind: "create" });
    else if (draft.callbackId) {
      api.GET("/api/v1/callbacks/{callback_id}", { params: { path: { callback_id: draft.callbackId } } }).then(
        ({ data }) => data && setOpen({ kind: draft.kind, callback: data } as Open),
      );
    }
  }, []);

  const applySearch = useMemo(() => debounce((q: string) => setFilters((f) => ({ ...f, q })), 300), []);

  const load = useCallback(async () => {
    setLoading(true);
    const query = listQuery(filters, { tz: browserTimeZone(), cursor, pageSize: PAGE_SIZE });
    const { data, error: problem, response } = await api.GET("/api/v1/callbacks", { params: { query } });
    setLoading(false);
    if (data) {
      setPage(data);
      setError(null);
    } else if (response.status !== 401) {
      setError((problem as { detail?: string } | undefined)?.detail ?? `The list could not be read (HTTP ${response.status}).`);
    }
  }, [api, filters, cursor]);

  useEffect(() => {
    load();
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") load();
    }, AUTO_REFRESH_MS);
    return () => clearInterval(timer);
  }, [load]);

  const setFilter = (patch: Partial<ListFilters>) => {
    setCursors([null]);
    setFilters((f) => ({ ...f, ...patch }));
  };
  const applyCustom = (from: string, to: string) => {
    const f = wallTimeToIso(from, zone);
    const t = wallTimeToIso(to, zone);
    if (f && t) setFilter({ range: "custom", from: f, to: t });
  };

  const cols = prefs.columns;
  const visible = COLUMNS.filter((c) => cols[c.key]);
  const items = page?.items ?? [];

  return (
    <section aria-labelledby="callback-title">
      <h1 id="callback-title" class="visually-hidden">
        Callbacks
      </h1>
      <div class="toolbar actions-bar">
        {ctx.operator && (
          <button class="primary" onClick={() => setOpen({ kind: "create" })}>
            + Create Callback
          </button>
        )}
        <button onClick={() => load()} aria-label="Refresh the callback list">
          Refresh
        </button>
        <button onClick={() => setOpen({ kind: "options" })}>Advanced Options</button>
        <p class="status-line" aria-live="polite">
          {page && (
            <span>
              {formatTime(page.range_from, prefs)} – {formatTime(page.range_to, prefs)} · {items.length} shown
              {page.next_cursor ? " (more on the next page)" : ""}
            </span>
          )}
          <span class="muted">
            {" "}
            · times in {prefs.utc ? "UTC" : zone} · refreshes every 5 s{loading ? " · loading…" : ""}
          </span>
        </p>
      </div>
      <div class="toolbar" role="group" aria-label="Filters">
        <label class="inline">
          <span>Date range</span>
          <select
            value={filters.range}
            onChange={(e) => {
              const v = (e.target as HTMLSelectElement).value as ListFilters["range"];
              if (v === "custom") setFilters((f) => ({ ...f, range: "custom" }));
              else setFilter({ range: v, from: null, to: null });
            }}
          >
            {RANGE_PRESETS.map((r) => (
              <option value={r.value}>{r.label}</option>
            ))}
            <option value="custom">Custom range…</option>
          </select>
        </label>
        {filters.range === "custom" && (
          <>
            <label class="inline">
              <span>From</span>
              <input
                type="datetime-local"
                value={customFrom}
                onChange={(e) => {
                  const v = (e.target as HTMLInputElement).value;
                  setCustomFrom(v);
                  applyCustom(v, customTo);
                }}
              />
            </label>
            <label class="inline">
              <span>To</span>
              <input
                type="datetime-local"
                value={customTo}
                onChange={(e) => {
                  const v = (e.target as HTMLInputElement).value;
                  setCustomTo(v);
                  applyCustom(customFrom, v);
                }}
              />
            </label>
          </>
        )}
        <label class="inline">
          <span>State</span>
          <select value={filters.state} onChange={(e) => setFilter({ state: (e.target as HTMLSelectElement).value as ListFilters["state"] })}>
            <option value="ALL">ALL</option>
            {STATES.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label class="inline">
          <span>Service</span>
          <select value={filters.service} onChange={(e) => setFilter({ service: (e.target as HTMLSelectElement).value })}>
            <option value="ALL">ALL</option>
            {ctx.services.map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <span class="search">
          <label class="visually-hidden" for="search-field">
            Search by
          </label>
          <select id="search-field" value={filters.field} onChange={(e) => setFilter({ field: (e.target as HTMLSelectElement).value as ListFilters["field"] })}>
            {SEARCH_FIELDS.map((f) => (
              <option value={f.value}>{f.label}</option>
            ))}
          </select>
          <input
            type="search"
            aria-label="Search"
            placeholder="Search…"
            value={typed}
            maxLength={100}
            onInput={(e) => {
              const v = (e.target as HTMLInputElement).value;
              setTyped(v);
              setCursors([null]);
              applySearch(v);
            }}
          />
        </span>
      </div>
      {notice && (
        <p class="notice" role="status">
          {notice}{" "}
          <button class="link" onClick={() => setNotice(null)}>
            Dismiss
          </button>
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <table class="callbacks">
        <thead>
          <tr>
            <th class="narrow">
              <span class="visually-hidden">Details</span>
            </th>
            {visible.map((c) => (
              <th scope="col">{c.label}</th>
            ))}
            <th class="narrow" scope="col">
              <span class="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {items.length === 0 && (
            <tr>
              <td colSpan={visible.length + 2} class="empty">
                {page ? "No callback in this range and these filters." : "Loading…"}
              </td>
            </tr>
          )}
          {items.map((cb) => (
            <Row
              key={cb.id}
              cb={cb}
              ctx={ctx}
              visible={visible.map((c) => c.key)}
              open={!!expanded[cb.id]}
              toggle={() => setExpanded((x) => ({ ...x, [cb.id]: !x[cb.id] }))}
              onEdit={() => setOpen({ kind: "edit", callback: cb })}
              onRecreate={() => setOpen({ kind: "recreate", callback: cb })}
            />
          ))}
        </tbody>
      </table>
      <nav class="pager" aria-label="Pages">
        <button disabled={cursors.length <= 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
          Previous page
        </button>
        <span>Page {cursors.length}</span>
        <button disabled={!page?.next_cursor} onClick={() => page?.next_cursor && setCursors((c) => [...c, page.next_cursor!])}>
          Next page
        </button>
      </nav>
      {open?.kind === "options" && <OptionsDialog ctx={ctx} onClose={() => setOpen(null)} />}
      {open?.kind === "create" && (
        <CreateDialog
          ctx={ctx}
          onClose={(msg) => {
            setOpen(null);
            if (msg) setNotice(msg);
            load();
          }}
        />
      )}
      {open?.kind === "edit" && (
        <EditDialog
          ctx={ctx}
          callback={open.callback}
          onClose={(msg) => {
            setOpen(null);
            if (msg) setNotice(msg);
            load();
          }}
        />
      )}
      {open?.kind === "recreate" && (
        <RecreateDialog
          ctx={ctx}
          callback={open.callback}
          onClose={(msg) => {
            setOpen(null);
            if (msg) setNotice(msg);
            load();
          }}
        />
      )}
    </section>
  );
}

function StateCell({ cb }: { cb: Callback }) {
  const tipId = `overdue-${cb.id}`;
  return (
    <span class="state-cell">
      <span class={`state state-${cb.state.toLowerCase()}`}>{cb.state}</span>
      {cb.state === "COMPLETED" && cb.result && <span class="result">({cb.result})</span>}
      {cb.overdue && (
        <span class="tip" tabIndex={0} aria-describedby={tipId} data-testid="overdue">
          <WarningIcon label="Overdue" />
          <span role="tooltip" id={tipId} class="tip-text">
            {cb.overdue_message ?? "Overdue"}
          </span>
        </span>
      )}
      {cb.originated_as_scheduled && (
        <span class="tip" tabIndex={0} title="Created as a scheduled callback">
          <CalendarIcon label="Scheduled callback" />
        </span>
      )}
      {cb.cancel_pending && <span class="badge">cancel pending</span>}
    </span>
  );
}

function Row(props: {
  cb: Callback;
  ctx: Ctx;
  visible: string[];
  open: boolean;
  toggle: () => void;
  onEdit: () => void;
  onRecreate: () => void;
}) {
  const { cb, ctx, visible } = props;
  const prefs = ctx.prefs;
  const cells: Record<string, preact.JSX.Element | string> = {
    state: <StateCell cb={cb} />,
    desired_time: <span class="time">{formatTime(cb.desired_time, prefs)}</span>,
    customer_number: <span class="mono">{cb.customer_number}</span>,
    service_name: cb.service_name,
  };
  return (
    <Fragment>
      <tr class={props.open ? "expanded" : ""} data-callback-id={cb.id}>
        <td class="narrow">
          <button
            class="icon-button"
            aria-expanded={props.open}
            aria-label={`Details of the callback to ${cb.customer_number}`}
            onClick={props.toggle}
          >
            <ChevronIcon open={props.open} />
          </button>
        </td>
        {visible.map((k) => (
          <td>{cells[k]}</td>
        ))}
        <td class="narrow actions">
          {ctx.operator && (cb.can_cancel || cb.can_reschedule) && (
            <button class="icon-button" aria-label={`Edit the callback to ${cb.customer_number}`} title="Edit (reschedule or cancel)" onClick={props.onEdit}>
              <PencilIcon />
            </button>
          )}
          {ctx.operator && cb.can_recreate && (
            <button class="icon-button" aria-label={`Recreate the callback to ${cb.customer_number}`} title="Recreate" onClick={props.onRecreate}>
              <RecreateIcon />
            </button>
          )}
        </td>
      </tr>
      {props.open && (
        <tr class="details">
          <td></td>
          <td colSpan={visible.length + 1}>
            <Details cb={cb} ctx={ctx} />
          </td>
        </tr>
      )}
    </Fragment>
  );
}

function Details({ cb, ctx }: { cb: Callback; ctx: Ctx }) {
  const [advanced, setAdvanced] = useState(false);
  const [detail, setDetail] = useState<Callback | null>(null);
  const [error, setError] = useState<string | null>(null);
  const mounted = useRef(true);
  useEffect(() => () => void (mounted.current = false), []);
  useEffect(() => {
    if (!advanced) return;
    ctx.api
      .GET("/api/v1/callbacks/{callback_id}", { params: { path: { callback_id: cb.id }, query: { advanced: true } } })
      .then(({ data, response }) => {
        if (!mounted.current) return;
        if (data) setDetail(data);
        else setError(`The timeline could not be read (HTTP ${response.status}).`);
      });
  }, [advanced, cb.id, cb.updated_at]);
  const prefs = ctx.prefs;
  return (
    <div class="detail-grid">
      <dl>
        <dt>Position in queue</dt>
        <dd>{cb.position_in_queue ?? "—"}</dd>
        <dt>Estimated wait (EWT)</dt>
        <dd>{cb.estimated_wait_seconds != null ? formatDuration(cb.estimated_wait_seconds) : "—"}</dd>
        <dt>Dial attempts</dt>
        <dd>{cb.dial_attempts}</dd>
        <dt>Agent</dt>
        <dd>{cb.agent ?? "—"}</dd>
        <dt>Callback ID</dt>
        <dd class="mono">{cb.id}</dd>
        <dt>Created</dt>
        <dd>
          {formatTime(cb.created_at, prefs)} by {cb.created_by ?? "—"}
        </dd>
        {cb.overdue_message && (
          <>
            <dt>Overdue</dt>
            <dd>{cb.overdue_message}</dd>
          </>
        )}
      </dl>
      <label class="switch">
        <input type="checkbox" checked={advanced} onChange={(e) => setAdvanced((e.target as HTMLInputElement).checked)} />
        Advanced Callback Metrics
      </label>
      {advanced && error && <p class="error">{error}</p>}
      {advanced && detail?.timeline && <Timeline entries={detail.timeline} ctx={ctx} />}
    </div>
  );
}

function Timeline({ entries, ctx }: { entries: TimelineEntry[]; ctx: Ctx }) {
  return (
    <table class="timeline" aria-label="Timeline">
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">State</th>
          <th scope="col">Actor</th>
          <th scope="col">Source</th>
          <th scope="col">Note</th>
        </tr>
      </thead>
      <tbody>
        {entries.map((e) => (
          <tr>
            <td class="time">{formatTime(e.at, ctx.prefs, undefined, { seconds: true })}</td>
            <td>
              {e.state}
              {e.result ? ` (${e.result})` : ""}
            </td>
            <td>{e.actor ?? "—"}</td>
            <td>{e.source}</td>
            <td>{e.note ?? ""}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
