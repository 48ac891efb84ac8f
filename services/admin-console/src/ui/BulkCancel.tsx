import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  bulkRequest,
  entriesOfBatch,
  expectedEntries,
  jobView,
  plural,
  previewHeadline,
  byReason,
  reasonWords,
  reportFileName,
  type BulkCancelPreview,
  type BulkCancelResult,
  type BulkItem,
  type ReportEntry,
} from "../lib/bulk";
import { saveBlob } from "../lib/download";
import type { ListFilters } from "../lib/filters";
import { problemView } from "../lib/problems";
import { latestRead } from "../lib/reads";
import { can } from "../lib/roles";
import { browserTimeZone, formatTime } from "../lib/time";
import type { Ctx } from "./context";
import { Modal } from "./Modal";
import { OverdueWarning } from "./Overdue";
import "./screens.css";

/** How often a running bulk cancel, and then the report, are read again. */
const POLL_MS = 1000;
/** The report is no longer waited for after this long (the exporter may be down). */
const REPORT_WAIT_MS = 60_000;

type Close = (message?: string) => void;
type Open = { kind: "confirm"; allInRange: boolean } | { kind: "export" } | null;

/**
 * The Callback tab's bulk actions: Cancel Selected, Cancel All Callbacks In Current Time Range
 * (operators), Export Cancelled Reports (export permission). Nothing for a monitor.
 */
export function BulkActions(props: {
  ctx: Ctx;
  filters: ListFilters;
  selectedIds: string[];
  range: { from: string; to: string } | null;
  onDone: Close;
}) {
  const { ctx, selectedIds } = props;
  const [open, setOpen] = useState<Open>(null);
  const operator = ctx.operator;
  const exporter = can(ctx.session, "export");
  if (!operator && !exporter) return null;
  return (
    <>
      {operator && (
        <>
          <button
            class="danger-outline"
            disabled={!selectedIds.length}
            title={selectedIds.length ? undefined : "Select callbacks in the table first"}
            onClick={() => setOpen({ kind: "confirm", allInRange: false })}
          >
            Cancel Selected ({selectedIds.length})
          </button>
          <button class="danger-outline" onClick={() => setOpen({ kind: "confirm", allInRange: true })}>
            Cancel All Callbacks In Current Time Range
          </button>
        </>
      )}
      {exporter && <button onClick={() => setOpen({ kind: "export" })}>Export Cancelled Reports</button>}
      {open?.kind === "confirm" && (
        <BulkCancelDialog
          ctx={ctx}
          filters={props.filters}
          ids={selectedIds}
          range={props.range}
          allInRange={open.allInRange}
          onClose={(message) => {
            setOpen(null);
            if (message !== undefined) props.onDone(message);
          }}
        />
      )}
      {open?.kind === "export" && <ExportDialog ctx={ctx} onClose={() => setOpen(null)} />}
    </>
  );
}

/** Fetches the Cancellation Summary Report CSV (with the Authorization header) and saves it. */
function useReportDownload(ctx: Ctx) {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const run = async () => {
    setBusy(true);
    setMessage(null);
    const { data, error, response } = await ctx.api.GET("/api/v1/reports/cancellations", {
      params: { query: { format: "csv" } },
      parseAs: "blob",
    });
    setBusy(false);
    if (data) {
      const name = reportFileName(response.headers.get("Content-Disposition"));
      saveBlob(data as unknown as Blob, name);
      setMessage({ ok: true, text: `Downloaded ${name}.` });
    } else if (response.status === 404) {
      setMessage({ ok: false, text: "You have cancelled no callbacks recently: there is no report to export." });
    } else if (response.status !== 401) {
      setMessage({ ok: false, text: problemView(response.status, error).message });
    }
  };
  return { busy, message, run };
}

function DownloadMessage({ message }: { message: { ok: boolean; text: string } | null }) {
  if (!message) return null;
  return (
    <p class={message.ok ? "notice" : "error"} role={message.ok ? "status" : "alert"}>
      {message.text}
    </p>
  );
}

const REPORT_HINT =
  "Your cancellations of the last 14 days in the services you are granted, newest first: each callback's " +
  "cancellation status (cancelled, requested from routing, refused). A CSV file.";

/** The guide's Export Cancelled Reports dialog. */
export function ExportDialog({ ctx, onClose }: { ctx: Ctx; onClose: () => void }) {
  const download = useReportDownload(ctx);
  return (
    <Modal title="Export Cancelled Reports" onClose={onClose}>
      <div class="modal-body">
        <fieldset>
          <legend>Report Type</legend>
          <label class="check plain">
            <input type="radio" name="report-type" value="cancellation-summary" checked />
            Cancellation Summary Report
          </label>
          <p class="hint">{REPORT_HINT}</p>
        </fieldset>
        <DownloadMessage message={download.message} />
      </div>
      <footer>
        <button type="button" onClick={onClose}>
          Close
        </button>
        <button type="button" class="primary" disabled={download.busy} onClick={download.run}>
          {download.busy ? "Exporting…" : "Export"}
        </button>
      </footer>
    </Modal>
  );
}

function ItemsTable(props: { label: string; items: BulkItem[]; ctx: Ctx; why?: boolean }) {
  return (
    <div class="bulk-items">
      <table aria-label={props.label}>
        <thead>
          <tr>
            <th scope="col">Phone Number</th>
            <th scope="col">Service Name</th>
            <th scope="col">Desired Callback Time</th>
            <th scope="col">State</th>
            {props.why && <th scope="col">Why not cancelled</th>}
          </tr>
        </thead>
        <tbody>
          {props.items.map((item) => (
            <tr key={item.id}>
              <td class="mono nowrap">{item.customer_number ?? <span class="muted small">{item.id}</span>}</td>
              <td>{item.service_name ?? "—"}</td>
              <td class="time">{item.desired_time ? formatTime(item.desired_time, props.ctx.prefs) : "—"}</td>
              <td>
                {item.state ?? "—"}
                {item.derived?.overdue && <OverdueWarning id={`bulk-${item.id}`} message={item.derived.overdue_message} />}
                {item.derived?.cancel_pending && <span class="badge">cancel pending</span>}
              </td>
              {props.why && <td>{reasonWords(item.reason)}</td>}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Preview({ preview, allInRange, ctx }: { preview: BulkCancelPreview; allInRange: boolean; ctx: Ctx }) {
  const reasons = byReason(preview.excluded_by_reason);
  return (
    <>
      <p class="headline" data-testid="preview-headline">
        {previewHeadline(preview)}
      </p>
      {!allInRange && preview.items.length > 0 && (
        <ItemsTable label="Callbacks to cancel" items={preview.items} ctx={ctx} />
      )}
      {preview.excluded > 0 && (
        <section aria-labelledby="excluded-title" class="excluded">
          <h3 id="excluded-title">Excluded: not cancelled ({preview.excluded})</h3>
          <ul class="reasons">
            {reasons.map((r) => (
              <li key={r.reason}>
                <strong>{r.count}</strong> — {r.words}
              </li>
            ))}
          </ul>
          <ItemsTable label="Excluded callbacks" items={preview.excluded_items} ctx={ctx} why />
        </section>
      )}
      {preview.truncated && (
        <p class="hint">The lists show the first {preview.items.length + preview.excluded_items.length}; the counts cover all.</p>
      )}
    </>
  );
}

function Outcome({ result, expected }: { result: BulkCancelResult; expected: number }) {
  const view = jobView(result, expected);
  return (
    <>
      <p role="status" class={view.phase === "failed" ? "error" : "headline"}>
        {view.status}
      </p>
      <progress
        class="bulk-progress"
        max={100}
        value={view.percent}
        aria-label="Bulk cancel progress"
        aria-valuetext={`${view.seen} of ${view.total} handled`}
      />
      <dl class="summary counts" aria-label="Bulk cancel counts">
        <dt>Cancelled</dt>
        <dd data-testid="count-cancelled">{view.cancelled}</dd>
        <dt>Requested from routing (pending)</dt>
        <dd data-testid="count-requested">{view.requested}</dd>
        <dt>Refused or excluded</dt>
        <dd data-testid="count-refused">{view.notCancelled}</dd>
      </dl>
      {view.reasons.length > 0 && (
        <ul class="reasons">
          {view.reasons.map((r) => (
            <li key={r.reason}>
              <strong>{r.count}</strong> — {r.words}
            </li>
          ))}
        </ul>
      )}
      {view.requested > 0 && (
        <p class="hint">
          Callbacks already dispatched were asked of routing: they show "cancel pending" until routing answers, and are
          cancelled only if no agent was reached.
        </p>
      )}
    </>
  );
}

/** How far the exporter has recorded this bulk cancel in the report (it follows the events). */
function ReportReadiness({ ctx, result }: { ctx: Ctx; result: BulkCancelResult }) {
  const expected = expectedEntries(result);
  const [recorded, setRecorded] = useState(0);
  const [gaveUp, setGaveUp] = useState(false);
  useEffect(() => {
    if (!expected) return;
    let live = true;
    const started = Date.now();
    const check = async () => {
      const { data } = await ctx.api.GET("/api/v1/reports/cancellations", { params: { query: { format: "json" } } });
      if (!live) return;
      const got = Array.isArray(data) ? entriesOfBatch(data as ReportEntry[], result.batch_id) : 0;
      setRecorded(got);
      if (got >= expected) return;
      if (Date.now() - started > REPORT_WAIT_MS) return setGaveUp(true);
      setTimeout(check, POLL_MS);
    };
    check();
    return () => void (live = false);
  }, [result.batch_id, expected]);
  if (!expected) return <p class="hint">Nothing was cancelled: the report has nothing new.</p>;
  const ready = recorded >= expected;
  return (
    <p class="hint" aria-live="polite" data-testid="report-readiness">
      {ready
        ? `The report holds all ${plural(expected, "entry", "entries")} of this cancel.`
        : gaveUp
          ? `The report holds ${recorded} of ${expected} entries of this cancel so far; the rest follow when the exporter catches up.`
          : `Recording this cancel in the report… ${recorded} of ${expected} entries so far.`}
    </p>
  );
}

/** The Cancel Callbacks Confirmation dialog: preview, confirm, progress, outcome, export. */
export function BulkCancelDialog(props: {
  ctx: Ctx;
  filters: ListFilters;
  ids: string[];
  range: { from: string; to: string } | null;
  allInRange: boolean;
  onClose: Close;
}) {
  const { ctx } = props;
  const [allInRange, setAllInRange] = useState(props.allInRange || !props.ids.length);
  const [preview, setPreview] = useState<BulkCancelPreview | null>(null);
  const [result, setResult] = useState<BulkCancelResult | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const download = useReportDownload(ctx);
  const live = useRef(true);
  useEffect(() => () => void (live.current = false), []);
  const request = bulkRequest(
    allInRange ? { allInRange: true, filters: props.filters, tz: browserTimeZone() } : { allInRange: false, ids: props.ids },
  );

  const begin = useMemo(latestRead, []);
  useEffect(() => {
    const stillLatest = begin();
    setPreview(null);
    setProblem(null);
    ctx.api.POST("/api/v1/callbacks/bulk-cancel/preview", { body: request }).then(({ data, error, response }) => {
      if (!live.current || !stillLatest()) return; // closed, or the other choice previewed since
      if (data) setPreview(data);
      else if (response.status !== 401) setProblem(problemView(response.status, error).message);
    });
  }, [allInRange]);

  // a job goes on in the background: read its progress until it is over
  useEffect(() => {
    if (result?.state !== "running") return;
    const timer = setTimeout(async () => {
      const { data, error, response } = await ctx.api.GET("/api/v1/callbacks/bulk-cancel/{batch_id}", {
        params: { path: { batch_id: result.batch_id } },
      });
      if (!live.current) return;
      if (data) setResult(data);
      else if (response.status !== 401) setProblem(problemView(response.status, error).message);
    }, POLL_MS);
    return () => clearTimeout(timer);
  }, [result]);

  const confirm = async () => {
    setBusy(true);
    setProblem(null);
    const { data, error, response } = await ctx.api.POST("/api/v1/callbacks/bulk-cancel", { body: request });
    setBusy(false);
    if (data) setResult(data);
    else if (response.status !== 401) setProblem(problemView(response.status, error).message);
  };

  const expected = preview?.total ?? 0;
  const finished = result && result.state !== "running";
  const close = () => {
    if (!result) return props.onClose();
    const view = jobView(result, expected);
    const counts = `${view.cancelled} cancelled, ${view.requested} requested from routing, ${view.notCancelled} refused or excluded`;
    props.onClose(
      view.phase === "running"
        ? `The bulk cancel goes on in the background (${view.seen} of ${view.total} handled so far).`
        : `Bulk cancel ${view.phase === "failed" ? "stopped" : "done"}: ${counts}.`,
    );
  };
  const range = props.range ? `${formatTime(props.range.from, ctx.prefs)} – ${formatTime(props.range.to, ctx.prefs)}` : null;

  return (
    <Modal title="Cancel Callbacks Confirmation" onClose={close} wide>
      <div class="modal-body">
        {!result && (
          <>
            <label class="check">
              <input
                type="checkbox"
                checked={allInRange}
                disabled={busy}
                onChange={(e) => setAllInRange((e.target as HTMLInputElement).checked)}
              />
              Cancel All Callbacks In Current Time Range
            </label>
            <p class="hint">
              {allInRange
                ? `Every open callback of the tab's range${range ? ` (${range})` : ""} and filters, not only the selected ones.`
                : `The ${plural(props.ids.length, "selected callback")}.`}
            </p>
          </>
        )}
        {problem && (
          <p class="error" role="alert">
            {problem}
          </p>
        )}
        <div aria-live="polite" aria-busy={!preview && !problem}>
          {!result && !preview && !problem && <p class="muted">Reading what would be cancelled…</p>}
          {!result && preview && <Preview preview={preview} allInRange={allInRange} ctx={ctx} />}
        </div>
        {!result && preview && preview.would_cancel > 0 && (
          <p class="hint">
            Callbacks already dispatched (due, QUEUED or ROUTING) are asked of routing: they show "cancel pending" until
            routing answers.
          </p>
        )}
        {result && <Outcome result={result} expected={expected} />}
        {finished && (
          <section class="export-after" aria-labelledby="export-after-title">
            <h3 id="export-after-title">Cancellation Summary Report</h3>
            <ReportReadiness ctx={ctx} result={result} />
            <button type="button" disabled={download.busy} onClick={download.run}>
              {download.busy ? "Exporting…" : "Export Cancelled Reports"}
            </button>
            <DownloadMessage message={download.message} />
          </section>
        )}
      </div>
      <footer>
        <button type="button" onClick={close}>
          Close
        </button>
        {!result && (
          <button type="button" class="danger" disabled={busy || !preview || preview.would_cancel === 0} onClick={confirm}>
            {busy ? "Cancelling…" : "Confirm"}
          </button>
        )}
      </footer>
    </Modal>
  );
}
