import { describe, expect, it } from "vitest";
import { formatDuration, formatTime, wallTimeToIso } from "../src/lib/time";

describe("formatTime", () => {
  const iso = "2026-03-10T13:05:00Z";
  it("24-hour in UTC", () => {
    expect(formatTime(iso, { hour24: true, utc: true })).toBe("2026-03-10 13:05 UTC");
  });
  it("12-hour in UTC", () => {
    expect(formatTime(iso, { hour24: false, utc: true })).toBe("2026-03-10 1:05 PM UTC");
  });
  it("a given time zone when not UTC", () => {
    expect(formatTime(iso, { hour24: true, utc: false }, "America/New_York")).toBe("2026-03-10 09:05 EDT");
  });
  it("midnight on a 12-hour clock is 12 AM", () => {
    expect(formatTime("2026-03-10T00:30:00Z", { hour24: false, utc: true })).toBe("2026-03-10 12:30 AM UTC");
  });
  it("across the DST change in Europe/Berlin on 2026-10-25", () => {
    const prefs = { hour24: true, utc: false };
    // 00:30 UTC is 02:30 CEST (UTC+2); 01:30 UTC is 02:30 CET (UTC+1): same wall time, other offset
    expect(formatTime("2026-10-25T00:30:00Z", prefs, "Europe/Berlin")).toBe("2026-10-25 02:30 GMT+2");
    expect(formatTime("2026-10-25T01:30:00Z", prefs, "Europe/Berlin")).toBe("2026-10-25 02:30 GMT+1");
    expect(formatTime("2026-10-25T01:30:00Z", { hour24: false, utc: false }, "Europe/Berlin")).toBe(
      "2026-10-25 2:30 AM GMT+1",
    );
    expect(formatTime("2026-10-25T01:30:00Z", { hour24: true, utc: true }, "Europe/Berlin")).toBe(
      "2026-10-25 01:30 UTC",
    );
  });
  it("empty for no time, seconds on request", () => {
    expect(formatTime(null, { hour24: true, utc: true })).toBe("");
    expect(formatTime(iso, { hour24: true, utc: true }, undefined, { seconds: true })).toBe("2026-03-10 13:05:00 UTC");
  });
});

describe("wallTimeToIso", () => {
  it("reads a wall time in a zone, either side of the DST change", () => {
    expect(wallTimeToIso("2026-10-24T12:00", "Europe/Berlin")).toBe("2026-10-24T10:00:00.000Z");
    expect(wallTimeToIso("2026-10-26T12:00", "Europe/Berlin")).toBe("2026-10-26T11:00:00.000Z");
    expect(wallTimeToIso("2026-10-26T12:00", "UTC")).toBe("2026-10-26T12:00:00.000Z");
    expect(wallTimeToIso("bad", "UTC")).toBeNull();
  });
});

describe("formatDuration", () => {
  it("hours, minutes, seconds", () => {
    expect(formatDuration(12)).toBe("12 s");
    expect(formatDuration(250)).toBe("4 min 10 s");
    expect(formatDuration(3900)).toBe("1 h 05 min");
    expect(formatDuration(null)).toBe("");
  });
});
