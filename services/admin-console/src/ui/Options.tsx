import { COLUMNS, type Prefs } from "../lib/storage";
import { browserTimeZone } from "../lib/time";
import type { Ctx } from "./context";
import { Modal } from "./Modal";

/** Advanced Options: clock, time zone and columns, kept per user in localStorage. */
export function OptionsDialog({ ctx, onClose }: { ctx: Ctx; onClose: () => void }) {
  const p = ctx.prefs;
  const set = (patch: Partial<Prefs>) => ctx.setPrefs({ ...p, ...patch });
  return (
    <Modal title="Advanced Options" onClose={onClose}>
      <fieldset>
        <legend>Times</legend>
        <label class="check">
          <input type="checkbox" checked={p.hour24} onChange={(e) => set({ hour24: (e.target as HTMLInputElement).checked })} />
          Show Time in 24 Hour
        </label>
        <label class="check">
          <input type="checkbox" checked={p.utc} onChange={(e) => set({ utc: (e.target as HTMLInputElement).checked })} />
          Show Times in UTC
        </label>
        <p class="hint">Otherwise times are shown in your browser's time zone ({browserTimeZone()}).</p>
      </fieldset>
      <fieldset>
        <legend>Columns</legend>
        {COLUMNS.map((c) => (
          <label class="check">
            <input
              type="checkbox"
              checked={p.columns[c.key]}
              onChange={(e) => set({ columns: { ...p.columns, [c.key]: (e.target as HTMLInputElement).checked } })}
            />
            {c.label}
          </label>
        ))}
      </fieldset>
      <p class="hint">Kept for {ctx.session.sub} in this browser.</p>
      <footer>
        <button class="primary" onClick={onClose}>
          Done
        </button>
      </footer>
    </Modal>
  );
}
