import { describe, expect, it } from "vitest";
import {
  bulkRequest,
  byReason,
  entriesOfBatch,
  expectedEntries,
  jobView,
  previewHeadline,
  reasonWords,
  reportFileName,
  type BulkCancelPreview,
  type BulkCancelResult,
  type ReportEntry,
} from "../src/lib/bulk";
import { DEFAULT_FILTERS } from "../src/lib/filters";

const preview = (p: Partial<BulkCancelPreview>): BulkCancelPreview => ({
  total: 0,
  would_cancel: 0,
  excluded: 0,
  excluded_by_reason: {},
  items: [],
  excluded_items: [],
  truncated: false,
  ...p,
});

const result = (r: Partial<BulkCancelResult>): BulkCancelResult => ({
  batch_id: "b1",
  actor: "sam",
  state: "running",
  total_seen: 0,
  cancelled: 0,
  requested: 0,
  refused: 0,
  skipped: 0,
  refused_by_reason: {},
  started_at: "2026-01-01T00:00:00Z",
  ...r,
});

describe("bulk cancel request", () => {
  it("chosen ids, each once", () => {
    expect(bulkRequest({ allInRange: false, ids: ["a", "b", "a"] })).toEqual({ ids: ["a", "b"] });
  });
  it("the whole range: the list's filters without paging", () => {
    const filters = { ...DEFAULT_FILTERS, range: "next_7_days" as const, service: "fast", q: " +1415", field: "phone_number" as const };
    expect(bulkRequest({ allInRange: true, filters, tz: "Europe/Berlin" })).toEqual({
      all_in_range: { tz: "Europe/Berlin", range: "next_7_days", service: ["fast"], field: "phone_number", q: "+1415" },
    });
  });
  it("a custom range sends from and to", () => {
    const filters = { ...DEFAULT_FILTERS, range: "custom" as const, from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", state: "SCHEDULED" as const };
    expect(bulkRequest({ allInRange: true, filters, tz: "UTC" })).toEqual({
      all_in_range: { tz: "UTC", from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z", state: ["SCHEDULED"] },
    });
  });
});

describe("preview in plain words", () => {
  it("says why a callback is excluded", () => {
    expect(reasonWords("PROCESSING")).toMatch(/^In progress with an agent \(PROCESSING\)/);
    expect(reasonWords("COMPLETED")).toBe("Already completed");
    expect(reasonWords("NOT_FOUND")).toBe("Not found, or in a service you are not granted");
    expect(reasonWords("SOMETHING_NEW")).toBe("Not cancellable");
    expect(reasonWords(null)).toBe("Not cancellable");
  });
  it("groups the excluded by reason, most first, zero counts left out", () => {
    expect(byReason({ COMPLETED: 1, PROCESSING: 3, NOT_FOUND: 0 }).map((r) => [r.reason, r.count])).toEqual([
      ["PROCESSING", 3],
      ["COMPLETED", 1],
    ]);
    expect(byReason(undefined)).toEqual([]);
  });
  it("headline", () => {
    expect(previewHeadline(preview({ total: 4, would_cancel: 3, excluded: 1 }))).toBe("3 callbacks will be cancelled; 1 excluded.");
    expect(previewHeadline(preview({ total: 1, would_cancel: 1 }))).toBe("1 callback will be cancelled.");
    expect(previewHeadline(preview({ total: 2, excluded: 2 }))).toBe("None of these callbacks can be cancelled.");
    expect(previewHeadline(preview({}))).toBe("No open callback matches: nothing to cancel.");
  });
});

describe("job progress", () => {
  it("running: share of the preview's total handled", () => {
    const view = jobView(result({ total_seen: 250, cancelled: 240, refused: 10 }), 1000);
    expect(view).toMatchObject({ phase: "running", percent: 25, seen: 250, total: 1000 });
    expect(view.status).toBe("Cancelling… 250 of 1000 handled.");
  });
  it("never past 100 % when more were seen than previewed", () => {
    expect(jobView(result({ total_seen: 12 }), 10)).toMatchObject({ total: 12, percent: 100 });
  });
  it("done: the final counts, refused and skipped together with their reasons", () => {
    const view = jobView(
      result({ state: "done", total_seen: 7, cancelled: 4, requested: 1, refused: 1, skipped: 1, refused_by_reason: { PROCESSING: 1 } }),
      7,
    );
    expect(view).toMatchObject({ phase: "done", percent: 100, cancelled: 4, requested: 1, notCancelled: 2 });
    expect(view.status).toBe("Done: 4 callbacks cancelled.");
    expect(view.reasons.map((r) => r.reason)).toEqual(["PROCESSING", "SKIPPED"]);
  });
  it("failed: says what stays and what to do", () => {
    const view = jobView(result({ state: "failed", total_seen: 500, cancelled: 500, error: "Kafka down" }), 2000);
    expect(view.phase).toBe("failed");
    expect(view.status).toContain("stopped after 500 of 2000: Kafka down");
    expect(view.status).toContain("submit the range again");
  });
  it("an older API answer without requested counts as 0", () => {
    const { requested: _, ...old } = result({ state: "done", cancelled: 2, total_seen: 2 });
    expect(jobView(old as BulkCancelResult, 2).requested).toBe(0);
  });
});

describe("the report after a bulk cancel", () => {
  const entry = (batch: string | null): ReportEntry => ({
    callback_id: "c",
    batch_id: batch,
    actor: "sam",
    status: "CANCELLED",
    cancelled_at: "2026-01-01T00:00:00Z",
    service_name: "fast",
    customer_number: "+14155550101",
    desired_time: "2026-01-01T00:00:00Z",
    previous_state: "SCHEDULED",
    reason: null,
  });
  it("expects an entry per cancelled, requested or refused callback (none for skipped)", () => {
    expect(expectedEntries(result({ cancelled: 3, requested: 1, refused: 2, skipped: 4 }))).toBe(6);
  });
  it("counts the entries of this batch only", () => {
    expect(entriesOfBatch([entry("b1"), entry("b2"), entry(null), entry("b1")], "b1")).toBe(2);
  });
  it("file name: the server's, made safe, else a dated one", () => {
    expect(reportFileName('attachment; filename="cancellation-summary-20260101T000000Z.csv"')).toBe(
      "cancellation-summary-20260101T000000Z.csv",
    );
    expect(reportFileName("attachment; filename*=UTF-8''report%201.csv")).toBe("report 1.csv");
    expect(reportFileName('attachment; filename="../etc/x.csv"')).toBe(".._etc_x.csv");
    expect(reportFileName(null, new Date("2026-03-04T05:06:07.891Z"))).toBe("cancellation-summary-20260304T050607Z.csv");
  });
});
