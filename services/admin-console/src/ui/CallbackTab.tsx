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
import { applyLiveEvent, pollInterval } from "../lib/live";
import { newerAnswers } from "../lib/reads";
import { COLUMNS, loadDraft } from "../lib/storage";
import { browserTimeZone, displayZone, formatDuration, formatTime, wallTimeToIso } from "../lib/time";
import type { Ctx } from "./context";
import { BulkActions } from "./BulkCancel";
import { CreateDialog, EditDialog, RecreateDialog, type DialogDraft } from "./Dialogs";
import { CalendarIcon, ChevronIcon, PencilIcon, RecreateIcon } from "./icons";
import { LiveIndicator, useLive } from "./Live";
import { OptionsDialog } from "./Options";
import { OverdueWarning } from "./Overdue";

const PAGE_SIZE = 250;

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
  /** Ids ticked for Cancel Selected (only those still cancellable on the page count). */
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
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

  // the page as last shown, for live events arriving between renders
  const shown = useRef<CallbackPage | null>(null);
  const showPage = (next: CallbackPage | null) => {
    shown.current = next;
    setPage(next);
  };

  const begin = useMemo(newerAnswers, []);
  const load = useCallback(async () => {
    const newer = begin();
    setLoading(true);
    const query = listQuery(filters, { tz: browserTimeZone(), cursor, pageSize: PAGE_SIZE });
    const { data, error: problem, response } = await api.GET("/api/v1/callbacks", { params: { query } });
    // not shown: an answer to other filters or another page than the screen's now (their own
    // read answers for them), or one older than an answer shown already (polls, live reloads)
    if (latest.current.load !== load || !newer()) return;
    setLoading(false);
    if (data) {
      showPage(data);
      setError(null);
    } else if (response.status !== 401) {
      setError((problem as { detail?: string } | undefined)?.detail ?? `The list could not be read (HTTP ${response.status}).`);
    }
  }, [api, filters, cursor]);

  // live updates change shown rows in place; the list is read again (debounced) when a
  // callback may have entered or left it, and now and then anyway (often while not live)
  const latest = useRef({ load, filters });
  latest.current = { load, filters };
  const reloadSoon = useMemo(() => debounce(() => latest.current.load(), 500), []);
  useEffect(() => () => reloadSoon.cancel(), []);
  const live = useLive(ctx, {
    onCallback: (event) => {
      const outcome = applyLiveEvent(shown.current, event, latest.current.filters);
      if (outcome.page !== shown.current) showPage(outcome.page);
      if (outcome.reload) reloadSoon();
      if (outcome.refetch) {
        api.GET("/api/v1/callbacks/{callback_id}", { params: { path: { callback_id: outcome.refetch } } }).then(({ data }) => {
          const current = shown.current;
          if (data && current) showPage({ ...current, items: current.items.map((cb) => (cb.id === data.id ? data : cb)) });
        });
      }
    },
    onReload: reloadSoon,
  });

  useEffect(() => {
    load();
  }, [load]);
  useEffect(() => {
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") latest.current.load();
    }, pollInterval(live, localStorage));
    return () => clearInterval(timer);
  }, [live]);

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
  const cancellable = items.filter((cb) => cb.can_cancel).map((cb) => cb.id);
  const selectedIds = cancellable.filter((id) => selected.has(id));
  const allSelected = cancellable.length > 0 && selectedIds.length === cancellable.length;
  const select = (ids: string[], on: boolean) =>
    setSelected((current) => {
      const next = new Set(current);
      for (const id of ids) on ? next.add(id) : next.delete(id);
      return next;
    });
  /** Columns before the record's own: details, and the selection for operators. */
  const lead = ctx.operator ? 2 : 1;
  const closeDialog = (message?: string) => {
    setOpen(null);
    if (message) setNotice(message);
    load();
  };

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
        <BulkActions
          ctx={ctx}
          filters={filters}
          selectedIds={selectedIds}
          range={page ? { from: page.range_from, to: page.range_to } : null}
          onDone={(message) => {
            setSelected(new Set());
            closeDialog(message);
          }}
        />
        <p class="status-line" aria-live="polite">
          {page && (
            <span>
              {formatTime(page.range_from, prefs)} – {formatTime(page.range_to, prefs)} · {items.length} shown
              {page.next_cursor ? " (more on the next page)" : ""}
            </span>
          )}
          <span class="muted">
            {" "}
            · times in {prefs.utc ? "UTC" : zone}
            {loading ? " · loading…" : ""}
          </span>
          <LiveIndicator status={live} />
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
            {ctx.operator && (
              <th class="select">
                <input
                  type="checkbox"
                  aria-label="Select all cancellable callbacks on this page"
                  title="Select all cancellable callbacks on this page"
                  checked={allSelected}
                  indeterminate={selectedIds.length > 0 && !allSelected}
                  disabled={!cancellable.length}
                  onChange={(e) => select(cancellable, (e.target as HTMLInputElement).checked)}
                />
              </th>
            )}
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
              <td colSpan={visible.length + lead + 1} class="empty">
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
              selected={ctx.operator ? selected.has(cb.id) : undefined}
              onSelect={(on) => select([cb.id], on)}
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
      {open?.kind === "create" && <CreateDialog ctx={ctx} onClose={closeDialog} />}
      {open?.kind === "edit" && <EditDialog ctx={ctx} callback={open.callback} onClose={closeDialog} />}
      {open?.kind === "recreate" && <RecreateDialog ctx={ctx} callback={open.callback} onClose={closeDialog} />}
    </section>
  );
}

function StateCell({ cb }: { cb: Callback }) {
  return (
    <span class="state-cell">
      <span class={`state state-${cb.state.toLowerCase()}`}>{cb.state}</span>
      {cb.state === "COMPLETED" && cb.result && <span class="result">({cb.result})</span>}
      {cb.overdue && <OverdueWarning id={cb.id} message={cb.overdue_message} />}
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
  /** Undefined: no selection column (not an operator). */
  selected?: boolean;
  onSelect: (on: boolean) => void;
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
        {props.selected !== undefined && (
          <td class="select">
            {cb.can_cancel && (
              <input
                type="checkbox"
                aria-label={`Select the callback to ${cb.customer_number}`}
                checked={props.selected}
                onChange={(e) => props.onSelect((e.target as HTMLInputElement).checked)}
              />
            )}
          </td>
        )}
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
          <td colSpan={props.selected !== undefined ? 2 : 1}></td>
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
