// Times as the Callback tab shows them: 24-hour or 12-hour clock, in UTC or a time zone
// (the browser's own unless one is given).

export interface TimePrefs {
  hour24: boolean;
  utc: boolean;
}

let browserZone: string | undefined;

/** The browser's time zone (read once: creating a DateTimeFormat costs ~0.3 ms, once per cell). */
export function browserTimeZone(): string {
  browserZone ??= Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  return browserZone;
}

/** The zone times are shown in: UTC, or `localZone` (default: the browser's). */
export function displayZone(prefs: TimePrefs, localZone?: string): string {
  return prefs.utc ? "UTC" : (localZone ?? browserTimeZone());
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string, hour24: boolean, seconds: boolean): Intl.DateTimeFormat {
  const key = `${zone}|${hour24}|${seconds}`;
  let found = formatters.get(key);
  if (!found) {
    found = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: seconds ? "2-digit" : undefined,
      hourCycle: hour24 ? "h23" : "h12",
      timeZoneName: "short",
    });
    formatters.set(key, found);
  }
  return found;
}

/** `2026-10-25 02:30 GMT+2`, `2026-10-25 2:30 AM GMT+2` or `2026-10-25 00:30 UTC`. */
export function formatTime(
  iso: string | null | undefined,
  prefs: TimePrefs,
  localZone?: string,
  opts: { seconds?: boolean; zoneName?: boolean } = {},
): string {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const zone = displayZone(prefs, localZone);
  const parts: Record<string, string> = {};
  for (const part of formatter(zone, prefs.hour24, !!opts.seconds).formatToParts(date)) {
    parts[part.type] = part.value;
  }
  let hour = parts.hour ?? "";
  if (!prefs.hour24) hour = String(Number(hour));
  const clock = `${hour}:${parts.minute}${opts.seconds ? `:${parts.second}` : ""}`;
  const ampm = prefs.hour24 ? "" : ` ${(parts.dayPeriod ?? "").toUpperCase()}`;
  const zoneName = opts.zoneName === false ? "" : ` ${prefs.utc ? "UTC" : parts.timeZoneName}`;
  return `${parts.year}-${parts.month}-${parts.day} ${clock}${ampm}${zoneName}`;
}

/** Seconds as `1 h 05 min`, `4 min 10 s` or `12 s`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null) return "";
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

/** The calendar date (YYYY-MM-DD) of `date` in `zone`. */
export function dateInZone(date: Date, zone: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).format(date);
  return parts;
}

/** A `datetime-local` input's value (wall time in `zone`) as an ISO instant, or null. */
export function wallTimeToIso(value: string, zone: string): string | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(value);
  if (!m) return null;
  const [y, mo, d, h, mi] = m.slice(1).map(Number) as [number, number, number, number, number];
  const guess = Date.UTC(y, mo - 1, d, h, mi);
  // the zone's offset at that moment, applied twice to settle near a DST change
  let instant = guess - offsetMinutes(new Date(guess), zone) * 60_000;
  instant = guess - offsetMinutes(new Date(instant), zone) * 60_000;
  return new Date(instant).toISOString();
}

function offsetMinutes(date: Date, zone: string): number {
  const parts: Record<string, string> = {};
  const fmt = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  for (const p of fmt.formatToParts(date)) parts[p.type] = p.value;
  const wall = Date.UTC(
    Number(parts.year),
    Number(parts.month) - 1,
    Number(parts.day),
    Number(parts.hour),
    Number(parts.minute),
  );
  return Math.round((wall - Math.floor(date.getTime() / 60_000) * 60_000) / 60_000);
}
