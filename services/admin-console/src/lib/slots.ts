// The slot picker of the Create and Edit dialogs: the open slots of a service's day.
import type { components } from "../api/schema";
import { formatTime, type TimePrefs } from "./time";

export type Availability = components["schemas"]["Availability"];

export interface SlotOption {
  value: string;
  label: string;
  remaining: number;
}

/** The offered slots (remaining capacity only, in time order), labelled in the user's format. */
export function slotOptions(availability: Availability | null, prefs: TimePrefs, localZone?: string): SlotOption[] {
  if (!availability || availability.closed) return [];
  return availability.slots
    .filter((slot) => slot.remaining > 0)
    .slice()
    .sort((a, b) => Date.parse(a.start) - Date.parse(b.start))
    .map((slot) => ({
      value: slot.start,
      label: `${formatTime(slot.start, prefs, localZone)} (${slot.remaining} left)`,
      remaining: slot.remaining,
    }));
}

/** The slot to keep selected: the current one while it is still offered, else none. */
export function keepSlot(options: SlotOption[], current: string | null): string | null {
  if (!current) return null;
  const at = Date.parse(current);
  const found = options.find((o) => Date.parse(o.value) === at);
  return found ? found.value : null;
}

/** Why no slot can be picked, or null when some can. */
export function noSlotsReason(availability: Availability | null): string | null {
  if (!availability) return null;
  if (availability.closed) return `The service is closed on ${availability.date}.`;
  if (!availability.slots.some((s) => s.remaining > 0)) return `No open slot left on ${availability.date}.`;
  return null;
}
