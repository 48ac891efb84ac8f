// Bulk cancel and the Cancellation Summary Report: the requests, and the answers in plain words.
import type { components } from "../api/schema";
import { listQuery, type ListFilters } from "./filters";

export type BulkCancelRequest = components["schemas"]["BulkCancelRequest"];
export type BulkCancelPreview = components["schemas"]["BulkCancelPreview"];
export type BulkCancelResult = components["schemas"]["BulkCancelResult"];
export type BulkItem = components["schemas"]["BulkItem"];
export type BulkReason = components["schemas"]["BulkReason"];
export type ReportEntry = components["schemas"]["ReportEntry"];

/** Why a callback is not cancelled, as the confirmation dialog says it. */
export const REASON_WORDS: Record<BulkReason, string> = {
  PROCESSING: "In progress with an agent (PROCESSING): it can no longer be cancelled",
  COMPLETED: "Already completed",
  NOT_FOUND: "Not found, or in a service you are not granted",
  CHANGING: "Its state kept changing while it was being cancelled: left as it is",
};

export function reasonWords(reason: string | null | undefined): string {
  return (reason && REASON_WORDS[reason as BulkReason]) || "Not cancellable";
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The body of the preview and of the bulk cancel: chosen ids, or the tab's range and filters. */
export function bulkRequest(
  selection: { allInRange: true; filters: ListFilters; tz: string } | { allInRange: false; ids: string[] },
): BulkCancelRequest {
  if (!selection.allInRange) return { ids: [...new Set(selection.ids)] };
  // the list's own query, without paging: the same callbacks the tab selects
  return { all_in_range: listQuery(selection.filters, { tz: selection.tz }) };
}

export interface ReasonCount {
  reason: string;
  words: string;
  count: number;
}

/** Counts by reason, most frequent first, each with its words. */
export function byReason(counts: Record<string, number> | undefined): ReasonCount[] {
  return Object.entries(counts ?? {})
    .filter(([, count]) => count > 0)
    .map(([reason, count]) => ({ reason, count, words: reasonWords(reason) }))
    .sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
}

/** The preview's headline. */
export function previewHeadline(preview: BulkCancelPreview): string {
  if (preview.total === 0) return "No open callback matches: nothing to cancel.";
  if (preview.would_cancel === 0) return "None of these callbacks can be cancelled.";
  const will = `${plural(preview.would_cancel, "callback")} will be cancelled`;
  return preview.excluded ? `${will}; ${preview.excluded} excluded.` : `${will}.`;
}

export type JobPhase = "running" | "done" | "failed";

export interface JobView {
  phase: JobPhase;
  /** Records handled so far. */
  seen: number;
  /** Records to handle (the preview's total; at least what was seen). */
  total: number;
  /** 0..100, for the progress bar. */
  percent: number;
  /** One line for a screen reader and the eye. */
  status: string;
  cancelled: number;
  /** Asked of routing (already dispatched): pending until routing answers. */
  requested: number;
  /** Refused (not cancellable any more) or skipped (not found, kept changing). */
  notCancelled: number;
  reasons: ReasonCount[];
}

/** A bulk cancel's progress as the dialog shows it; `expected`: the preview's total. */
export function jobView(result: BulkCancelResult, expected: number): JobView {
  const seen = result.total_seen;
  const total = Math.max(expected, seen);
  const phase: JobPhase = result.state;
  const requested = result.requested ?? 0;
  const notCancelled = result.refused + result.skipped;
  const percent = phase === "done" ? 100 : total ? Math.min(100, Math.floor((seen * 100) / total)) : 0;
  const reasons = byReason(result.refused_by_reason);
  if (result.skipped > 0)
    reasons.push({ reason: "SKIPPED", count: result.skipped, words: "Not found, or its state kept changing: left as it is" });
  let status: string;
  if (phase === "running") status = `Cancelling… ${seen} of ${total} handled.`;
  else if (phase === "failed")
    status = `The bulk cancel stopped after ${seen} of ${total}: ${result.error ?? "unknown error"}. What was cancelled stays cancelled; submit the range again to cancel the rest.`;
  else status = `Done: ${plural(result.cancelled, "callback")} cancelled.`;
  return { phase, seen, total, percent, status, cancelled: result.cancelled, requested, notCancelled, reasons };
}

/** Entries the report should get from this bulk cancel: one per cancelled, requested or refused. */
export function expectedEntries(result: BulkCancelResult): number {
  return result.cancelled + (result.requested ?? 0) + result.refused;
}

/** How many of a batch's entries the report holds already (the exporter writes them from the events). */
export function entriesOfBatch(entries: readonly ReportEntry[], batchId: string): number {
  return entries.filter((e) => e.batch_id === batchId).length;
}

/** The file name a download gets: the server's (Content-Disposition), else a dated one. */
export function reportFileName(disposition: string | null, now = new Date()): string {
  const star = disposition?.match(/filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i);
  const plain = disposition?.match(/filename\s*=\s*"?([^";]+)"?/i);
  const raw = star ? decodeURIComponent(star[1]!.trim().replace(/^"|"$/g, "")) : plain?.[1]?.trim();
  const safe = raw?.replace(/[\\/:*?"<>|\u0000-\u001f]/g, "_");
  if (safe) return safe;
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  return `cancellation-summary-${stamp}.csv`;
}
