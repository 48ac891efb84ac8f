// The Callback tab's filters and the list endpoint's query parameters they become.
import type { components, operations } from "../api/schema";

export type RangePreset = components["schemas"]["RangePreset"];
export type SearchField = components["schemas"]["SearchField"];
export type CallbackState = components["schemas"]["CallbackState"];
export type ListQuery = NonNullable<operations["list_callbacks_api_v1_callbacks_get"]["parameters"]["query"]>;

export const RANGE_PRESETS: { value: RangePreset; label: string }[] = [
  { value: "today", label: "Today" },
  { value: "last_14_days", label: "Last 14 days" },
  { value: "last_30_days", label: "Last 30 days" },
  { value: "next_7_days", label: "Next 7 days" },
  { value: "next_2_weeks", label: "Next 2 weeks" },
];

export const SEARCH_FIELDS: { value: SearchField; label: string }[] = [
  { value: "phone_number", label: "Phone Number" },
  { value: "service_name", label: "Service Name" },
  { value: "id", label: "Callback ID" },
  { value: "state", label: "State" },
];

export const STATES: CallbackState[] = ["SCHEDULED", "QUEUED", "ROUTING", "PROCESSING", "COMPLETED"];

export interface ListFilters {
  range: RangePreset | "custom";
  /** ISO instants, for range "custom". */
  from?: string | null;
  to?: string | null;
  /** "ALL" or one state. */
  state: CallbackState | "ALL";
  /** "ALL" or one service. */
  service: string | "ALL";
  field: SearchField;
  q: string;
}

export const DEFAULT_FILTERS: ListFilters = {
  range: "last_14_days",
  state: "ALL",
  service: "ALL",
  field: "phone_number",
  q: "",
};

/** The query of `GET /api/v1/callbacks` for these filters; `tz` is the zone of the presets' days. */
export function listQuery(
  filters: ListFilters,
  opts: { tz: string; cursor?: string | null; pageSize?: number },
): ListQuery {
  const query: ListQuery = { tz: opts.tz };
  if (filters.range === "custom") {
    if (filters.from && filters.to) {
      query.from = filters.from;
      query.to = filters.to;
    } else {
      query.range = "last_14_days";
    }
  } else {
    query.range = filters.range;
  }
  if (filters.state !== "ALL") query.state = [filters.state];
  if (filters.service !== "ALL") query.service = [filters.service];
  const q = filters.q.trim();
  if (q) {
    query.field = filters.field;
    query.q = q;
  }
  if (opts.pageSize) query.page_size = opts.pageSize;
  if (opts.cursor) query.cursor = opts.cursor;
  return query;
}

/** Calls `fn` once `ms` after the last call (the search box filters as you type). */
export function debounce<A extends unknown[]>(fn: (...args: A) => void, ms: number) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const debounced = (...args: A) => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => timer && clearTimeout(timer);
  return debounced;
}
