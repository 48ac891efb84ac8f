// The Services page's form: a service's settings as typed text, and back into the API's body.
// What is typed is sent as typed where it is not a number: the API refuses it at its field
// (422), and the form keeps it.
import type { components } from "../api/schema";
import { problemView, type Problem, type ProblemView } from "./problems";

export type ServiceConfig = components["schemas"]["ServiceConfig"];
export type DuplicateCheck = components["schemas"]["DuplicateCheck"];
export type ImmediateOutsideOfficeHours = components["schemas"]["ImmediateOutsideOfficeHours"];

export const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface Opening {
  opens: string;
  closes: string;
}

export interface ServiceForm {
  time_zone: string;
  default_country: string;
  desired_window_seconds: string;
  /** A weekday with no opening is closed. */
  office_hours: Record<Weekday, Opening[]>;
  /** One local date (YYYY-MM-DD) per line. */
  closed_dates: string;
  slot_length_minutes: string;
  slot_capacity: string;
  schedule_horizon_days: string;
  routing_silence_seconds: string;
  processing_stall_seconds: string;
  max_attempts: string;
  min_interval_seconds: string;
  duplicate_check: DuplicateCheck;
  /** Empty: no cap. */
  max_requests_per_number_per_day: string;
  /** Empty: no cap. */
  max_open_callbacks: string;
  immediate_outside_office_hours: ImmediateOutsideOfficeHours;
  refuse_premium_rate: boolean;
}

/** The form's fields in the page's order, by the names the API's errors map to ({@link formKey}). */
export const FORM_FIELDS = [
  "name",
  "time_zone",
  "default_country",
  "desired_window_seconds",
  "slot_length_minutes",
  "slot_capacity",
  "schedule_horizon_days",
  "dial_retry.max_attempts",
  "dial_retry.min_interval_seconds",
  "routing_silence_seconds",
  "processing_stall_seconds",
  "office_hours",
  ...WEEKDAYS.map((d) => `office_hours.${d}`),
  "closed_dates",
  "guards.duplicate_check",
  "guards.max_requests_per_number_per_day",
  "guards.max_open_callbacks",
  "guards.immediate_outside_office_hours",
  "guards.refuse_premium_rate",
] as const;

const text = (v: number | string | null | undefined) => (v === null || v === undefined ? "" : String(v));

/** The form showing stored settings (missing parts: the API's defaults, as GET answers them). */
export function toForm(s: ServiceConfig): ServiceForm {
  const hours = s.office_hours ?? {};
  const guards = s.guards ?? {};
  return {
    time_zone: s.time_zone ?? "UTC",
    default_country: s.default_country ?? "US",
    desired_window_seconds: text(s.desired_window_seconds ?? 120),
    office_hours: Object.fromEntries(
      WEEKDAYS.map((d) => [d, (hours[d] ?? []).map((o) => ({ opens: o.opens ?? "00:00", closes: o.closes ?? "24:00" }))]),
    ) as Record<Weekday, Opening[]>,
    closed_dates: (s.closed_dates ?? []).join("\n"),
    slot_length_minutes: text(s.slot_length_minutes ?? 15),
    slot_capacity: text(s.slot_capacity ?? 10),
    schedule_horizon_days: text(s.schedule_horizon_days ?? 30),
    routing_silence_seconds: text(s.routing_silence_seconds ?? 120),
    processing_stall_seconds: text(s.processing_stall_seconds ?? 3600),
    max_attempts: text(s.dial_retry?.max_attempts ?? 3),
    min_interval_seconds: text(s.dial_retry?.min_interval_seconds ?? 300),
    duplicate_check: guards.duplicate_check ?? "strict_1",
    max_requests_per_number_per_day: text(
      guards.max_requests_per_number_per_day === undefined ? 10 : guards.max_requests_per_number_per_day,
    ),
    max_open_callbacks: text(guards.max_open_callbacks),
    immediate_outside_office_hours: guards.immediate_outside_office_hours ?? "refuse",
    refuse_premium_rate: guards.refuse_premium_rate ?? true,
  };
}

/** A number when the text is one; else the text itself (the API names what is wrong). */
export function numberOrText(value: string): number | string {
  const t = value.trim();
  return t !== "" && /^[+-]?(\d+\.?\d*|\.\d+)$/.test(t) ? Number(t) : t;
}

/** Empty: null (no cap); else as {@link numberOrText}. */
function cap(value: string): number | string | null {
  return value.trim() === "" ? null : numberOrText(value);
}

/** The body of PUT /services/{name} (numbers the API refuses are sent as typed). */
export function toSettings(name: string, f: ServiceForm): ServiceConfig {
  const body = {
    name,
    time_zone: f.time_zone.trim(),
    default_country: f.default_country.trim().toUpperCase(),
    desired_window_seconds: numberOrText(f.desired_window_seconds),
    dial_retry: { max_attempts: numberOrText(f.max_attempts), min_interval_seconds: numberOrText(f.min_interval_seconds) },
    office_hours: Object.fromEntries(
      WEEKDAYS.filter((d) => f.office_hours[d].length).map((d) => [
        d,
        f.office_hours[d].map((o) => ({ opens: o.opens.trim(), closes: o.closes.trim() })),
      ]),
    ),
    closed_dates: f.closed_dates
      .split(/[\n,]+/)
      .map((d) => d.trim())
      .filter(Boolean),
    slot_length_minutes: numberOrText(f.slot_length_minutes),
    slot_capacity: numberOrText(f.slot_capacity),
    schedule_horizon_days: numberOrText(f.schedule_horizon_days),
    routing_silence_seconds: numberOrText(f.routing_silence_seconds),
    processing_stall_seconds: numberOrText(f.processing_stall_seconds),
    guards: {
      duplicate_check: f.duplicate_check,
      max_requests_per_number_per_day: cap(f.max_requests_per_number_per_day),
      max_open_callbacks: cap(f.max_open_callbacks),
      immediate_outside_office_hours: f.immediate_outside_office_hours,
      refuse_premium_rate: f.refuse_premium_rate,
    },
  };
  // what is not a number goes as typed, on purpose: the API refuses it at its field
  return body as unknown as ServiceConfig;
}

/**
 * The form's field of an API error field: an opening's error goes to its weekday
 * (`office_hours.monday.0.closes` → `office_hours.monday`), a closed date's to the list.
 */
export function formKey(field: string): string {
  const path = field.split(".").filter((p) => p !== "body");
  if (path[0] === "office_hours" && path[1]) return `office_hours.${path[1]}`;
  if (path[0] === "closed_dates") return "closed_dates";
  return path.join(".");
}

/** The closed date an error is about (`closed_dates.2` → the third date sent), if it says. */
function closedDate(field: string, sent: ServiceConfig | undefined): string | null {
  const m = field.match(/(?:^|\.)closed_dates\.(\d+)/);
  return m ? (sent?.closed_dates?.[Number(m[1])] ?? null) : null;
}

/** A refusal of PUT /services/{name} at the form's fields (`sent`: the body refused). */
export function settingsProblem(status: number, body: unknown, sent?: ServiceConfig): ProblemView {
  const problem: Problem = body && typeof body === "object" ? (body as Problem) : {};
  const errors = (problem.errors ?? []).map((e) => {
    const date = closedDate(e.field, sent);
    const message = e.message.replace(/^Value error, /, "");
    return { ...e, field: formKey(e.field), message: date ? `${date}: ${message}` : message };
  });
  return problemView(status, { ...problem, errors }, FORM_FIELDS);
}

/** DOM id of a field's input (error messages point at it). */
export function fieldId(key: string): string {
  return `svc-${key.replace(/[^a-z0-9]+/gi, "-")}`;
}
