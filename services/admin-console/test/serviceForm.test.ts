import { describe, expect, it } from "vitest";
import { fieldId, formKey, numberOrText, settingsProblem, toForm, toSettings, type ServiceConfig } from "../src/lib/serviceForm";

const stored: ServiceConfig = {
  name: "billing",
  time_zone: "Europe/Berlin",
  desired_window_seconds: 120,
  dial_retry: { max_attempts: 3, min_interval_seconds: 300 },
  default_country: "DE",
  office_hours: { monday: [{ opens: "08:00", closes: "12:00" }, { opens: "13:00", closes: "18:00" }], saturday: [{ opens: "09:00", closes: "24:00" }] },
  closed_dates: ["2026-12-24", "2026-12-25"],
  slot_length_minutes: 30,
  slot_capacity: 5,
  schedule_horizon_days: 14,
  routing_silence_seconds: 120,
  processing_stall_seconds: 3600,
  guards: {
    duplicate_check: "max_2",
    max_requests_per_number_per_day: null,
    max_open_callbacks: 500,
    immediate_outside_office_hours: "accept",
    refuse_premium_rate: false,
  },
};

describe("settings ↔ form", () => {
  it("round-trips stored settings unchanged", () => {
    expect(toSettings("billing", toForm(stored))).toEqual(stored);
  });
  it("shows weekdays without openings as closed, caps as empty text", () => {
    const form = toForm(stored);
    expect(form.office_hours.sunday).toEqual([]);
    expect(form.office_hours.monday).toHaveLength(2);
    expect(form.max_requests_per_number_per_day).toBe("");
    expect(form.max_open_callbacks).toBe("500");
    expect(form.closed_dates).toBe("2026-12-24\n2026-12-25");
  });
  it("fills the API's defaults for parts left out", () => {
    const form = toForm({ name: "x" });
    expect(form).toMatchObject({ time_zone: "UTC", slot_capacity: "10", max_requests_per_number_per_day: "10", max_open_callbacks: "", duplicate_check: "strict_1", refuse_premium_rate: true });
  });
  it("sends what was typed: numbers as numbers, the rest as typed for the API to refuse", () => {
    const form = { ...toForm(stored), slot_capacity: " 12 ", slot_length_minutes: "ten", max_open_callbacks: "  ", closed_dates: "2026-12-24\n\n 2027-01-01 ", default_country: "fr" };
    const body = toSettings("billing", form) as unknown as Record<string, unknown>;
    expect(body.slot_capacity).toBe(12);
    expect(body.slot_length_minutes).toBe("ten");
    expect((body.guards as Record<string, unknown>).max_open_callbacks).toBeNull();
    expect(body.closed_dates).toEqual(["2026-12-24", "2027-01-01"]);
    expect(body.default_country).toBe("FR");
  });
  it("a weekday with its openings removed is left out: closed", () => {
    const form = toForm(stored);
    form.office_hours.saturday = [];
    expect(Object.keys(toSettings("billing", form).office_hours!)).toEqual(["monday"]);
  });
  it("numberOrText", () => {
    expect(numberOrText("1.5")).toBe(1.5);
    expect(numberOrText("-3")).toBe(-3);
    expect(numberOrText("1e3")).toBe("1e3");
    expect(numberOrText("")).toBe("");
  });
});

describe("refusals at their field", () => {
  it("maps API fields to the form's", () => {
    expect(formKey("body.office_hours.monday.0.closes")).toBe("office_hours.monday");
    expect(formKey("office_hours.friday.1")).toBe("office_hours.friday");
    expect(formKey("body.closed_dates.3")).toBe("closed_dates");
    expect(formKey("guards.max_open_callbacks")).toBe("guards.max_open_callbacks");
    expect(fieldId("guards.max_open_callbacks")).toBe("svc-guards-max-open-callbacks");
  });
  it("puts a 422's errors at the fields, naming the closed date refused", () => {
    const sent = toSettings("billing", { ...toForm(stored), closed_dates: "2026-12-24\n2026-02-30" });
    const body = {
      status: 422,
      errors: [
        { field: "slot_capacity", location: "body", message: "Input should be greater than or equal to 1" },
        { field: "office_hours.monday.1", location: "body", message: "Value error, closes must be later than opens" },
        { field: "closed_dates.1", location: "body", message: "Input should be a valid date" },
      ],
    };
    expect(settingsProblem(422, body, sent)).toEqual({
      message: "Please correct the marked fields.",
      fields: {
        slot_capacity: "Input should be greater than or equal to 1.",
        "office_hours.monday": "Closes must be later than opens.",
        closed_dates: "2026-02-30: Input should be a valid date.",
      },
    });
  });
  it("a refusal of no form field shows at the top", () => {
    expect(settingsProblem(403, { status: 403, detail: "your roles do not allow this (configure)" })).toEqual({
      message: "Your roles do not allow this (configure).",
      fields: {},
    });
  });
});
