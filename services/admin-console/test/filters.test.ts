import { afterEach, describe, expect, it, vi } from "vitest";
import { DEFAULT_FILTERS, debounce, listQuery } from "../src/lib/filters";

describe("listQuery", () => {
  it("defaults: last 14 days, ALL states and services, no search", () => {
    expect(listQuery(DEFAULT_FILTERS, { tz: "Europe/Berlin" })).toEqual({ tz: "Europe/Berlin", range: "last_14_days" });
  });
  it("a preset, one state, one service, the search field and text, page size and cursor", () => {
    const q = listQuery(
      { range: "next_7_days", state: "SCHEDULED", service: "billing", field: "phone_number", q: " +1415 " },
      { tz: "UTC", cursor: "abc", pageSize: 250 },
    );
    expect(q).toEqual({
      tz: "UTC",
      range: "next_7_days",
      state: ["SCHEDULED"],
      service: ["billing"],
      field: "phone_number",
      q: "+1415",
      page_size: 250,
      cursor: "abc",
    });
  });
  it("a custom range sends from/to and no preset", () => {
    const q = listQuery(
      { ...DEFAULT_FILTERS, range: "custom", from: "2026-10-24T22:00:00.000Z", to: "2026-10-26T23:00:00.000Z" },
      { tz: "UTC" },
    );
    expect(q).toEqual({ tz: "UTC", from: "2026-10-24T22:00:00.000Z", to: "2026-10-26T23:00:00.000Z" });
  });
  it("an incomplete custom range falls back to the default preset; blank search sends no field", () => {
    const q = listQuery({ ...DEFAULT_FILTERS, range: "custom", from: "2026-10-24T22:00:00.000Z", field: "id", q: "  " }, { tz: "UTC" });
    expect(q).toEqual({ tz: "UTC", range: "last_14_days" });
  });
});

describe("debounce", () => {
  afterEach(() => vi.useRealTimers());
  it("calls once, 300 ms after the last keystroke", () => {
    vi.useFakeTimers();
    const seen: string[] = [];
    const f = debounce((q: string) => seen.push(q), 300);
    f("4");
    vi.advanceTimersByTime(200);
    f("41");
    vi.advanceTimersByTime(299);
    expect(seen).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(seen).toEqual(["41"]);
  });
});
