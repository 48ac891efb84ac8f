import { describe, expect, it } from "vitest";
import { keepSlot, noSlotsReason, slotOptions, type Availability } from "../src/lib/slots";

const availability: Availability = {
  service_name: "billing",
  date: "2026-10-25",
  time_zone: "Europe/Berlin",
  slot_length_minutes: 30,
  closed: false,
  slots: [
    { start: "2026-10-25T08:30:00Z", local_start: "2026-10-25T09:30:00+01:00", capacity: 5, taken: 1, remaining: 4 },
    { start: "2026-10-25T08:00:00Z", local_start: "2026-10-25T09:00:00+01:00", capacity: 5, taken: 5, remaining: 0 },
    { start: "2026-10-25T09:00:00Z", local_start: "2026-10-25T10:00:00+01:00", capacity: 5, taken: 0, remaining: 5 },
  ],
};

describe("slot picker", () => {
  it("offers open slots only, in time order, in the user's clock and zone", () => {
    const options = slotOptions(availability, { hour24: true, utc: false }, "Europe/Berlin");
    expect(options.map((o) => o.value)).toEqual(["2026-10-25T08:30:00Z", "2026-10-25T09:00:00Z"]);
    expect(options[0]!.label).toBe("2026-10-25 09:30 GMT+1 (4 left)");
    const utc12 = slotOptions(availability, { hour24: false, utc: true });
    expect(utc12[1]!.label).toBe("2026-10-25 9:00 AM UTC (5 left)");
  });
  it("keeps the chosen slot while offered, drops it when full or gone", () => {
    const options = slotOptions(availability, { hour24: true, utc: true });
    expect(keepSlot(options, "2026-10-25T08:30:00.000Z")).toBe("2026-10-25T08:30:00Z");
    expect(keepSlot(options, "2026-10-25T08:00:00Z")).toBeNull();
    expect(keepSlot(options, null)).toBeNull();
  });
  it("says why nothing can be picked", () => {
    expect(slotOptions({ ...availability, closed: true }, { hour24: true, utc: true })).toEqual([]);
    expect(noSlotsReason({ ...availability, closed: true })).toBe("The service is closed on 2026-10-25.");
    expect(noSlotsReason({ ...availability, slots: [availability.slots[1]!] })).toBe("No open slot left on 2026-10-25.");
    expect(noSlotsReason(availability)).toBeNull();
  });
});
