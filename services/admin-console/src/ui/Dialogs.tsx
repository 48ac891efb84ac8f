import { useEffect, useState } from "preact/hooks";
import type { Availability, Callback } from "../api/client";
import { problemView, type ProblemView } from "../lib/problems";
import { keepSlot, noSlotsReason, slotOptions } from "../lib/slots";
import { clearDraft, loadDraft, saveDraft } from "../lib/storage";
import { browserTimeZone, dateInZone, formatTime } from "../lib/time";
import type { Ctx } from "./context";
import { Modal } from "./Modal";

export interface DialogDraft {
  kind: "create" | "edit" | "recreate";
  callbackId?: string;
  fields: Record<string, string>;
}

type Close = (message?: string) => void;

function tomorrow(): string {
  return dateInZone(new Date(Date.now() + 86_400_000), browserTimeZone());
}

/** Fields kept in sessionStorage while the dialog is open (a lapsed sign-in loses nothing). */
function useDraft(kind: DialogDraft["kind"], callbackId: string | undefined, initial: Record<string, string>) {
  const [fields, setFields] = useState<Record<string, string>>(() => {
    const draft = loadDraft<DialogDraft>("dialog");
    return draft && draft.kind === kind && draft.callbackId === callbackId ? { ...initial, ...draft.fields } : initial;
  });
  const set = (patch: Record<string, string>) =>
    setFields((f) => {
      const next = { ...f, ...patch };
      saveDraft("dialog", { kind, callbackId, fields: next });
      return next;
    });
  return [fields, set] as const;
}

/** A dialog's close: its draft goes with it. */
function closing(onClose: Close): Close {
  return (message) => {
    clearDraft("dialog");
    onClose(message);
  };
}

const NO_SLOT: ProblemView = {
  message: "Please correct the marked fields.",
  fields: { desired_time: "Choose an available time slot." },
};

function TypeRadios(props: { name: string; value: string; onChange: (type: string) => void }) {
  return (
    <fieldset class="radios">
      <legend>Type</legend>
      {["IMMEDIATE", "SCHEDULED"].map((t) => (
        <label class="check">
          <input type="radio" name={props.name} value={t} checked={props.value === t} onChange={() => props.onChange(t)} />
          {t === "IMMEDIATE" ? "Immediate" : "Scheduled"}
        </label>
      ))}
    </fieldset>
  );
}

function FieldError({ id, text }: { id: string; text?: string }) {
  return text ? (
    <p id={id} class="field-error">
      {text}
    </p>
  ) : null;
}

function ProblemBanner({ problem }: { problem: ProblemView | null }) {
  return problem ? (
    <p class="error" role="alert">
      {problem.message}
    </p>
  ) : null;
}

/** Date, then the service's open slots that day (GET /services/{name}/availability). */
function SlotPicker(props: {
  ctx: Ctx;
  service: string;
  date: string;
  slot: string;
  error?: string;
  onDate: (d: string) => void;
  onSlot: (s: string) => void;
}) {
  const { ctx, service, date } = props;
  const [availability, setAvailability] = useState<Availability | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  useEffect(() => {
    setAvailability(null);
    setLoadError(null);
    if (!service || !date) return;
    let live = true;
    ctx.api
      .GET("/api/v1/services/{name}/availability", { params: { path: { name: service }, query: { date } } })
      .then(({ data, error, response }) => {
        if (!live) return;
        if (data) setAvailability(data);
        else setLoadError(problemView(response.status, error).message);
      });
    return () => void (live = false);
  }, [service, date]);
  const options = slotOptions(availability, ctx.prefs);
  useEffect(() => {
    if (!availability) return;
    const kept = keepSlot(options, props.slot || null);
    if (kept !== (props.slot || null)) props.onSlot(kept ?? "");
  }, [availability]);
  const reason = noSlotsReason(availability);
  return (
    <fieldset class="slots">
      <legend>When</legend>
      <label for="slot-date">Date (the service's days)</label>
      <input id="slot-date" type="date" value={date} onInput={(e) => props.onDate((e.target as HTMLInputElement).value)} />
      <label for="slot">Available time slot</label>
      <select
        id="slot"
        value={props.slot}
        aria-invalid={!!props.error}
        aria-describedby={props.error ? "slot-error" : undefined}
        disabled={!options.length}
        onChange={(e) => props.onSlot((e.target as HTMLSelectElement).value)}
      >
        <option value="">{!service ? "Choose a service first" : availability ? (options.length ? "Choose a slot…" : "No slot") : "Loading slots…"}</option>
        {options.map((o) => (
          <option value={o.value}>{o.label}</option>
        ))}
      </select>
      {availability && (
        <p class="hint">
          Slots of {availability.slot_length_minutes} min in {availability.time_zone}; shown in{" "}
          {ctx.prefs.utc ? "UTC" : "your time zone"}.
        </p>
      )}
      {reason && <p class="hint">{reason}</p>}
      {loadError && <p class="field-error">{loadError}</p>}
      <FieldError id="slot-error" text={props.error} />
    </fieldset>
  );
}

const CREATE_FIELDS = ["type", "service_name", "customer_number", "desired_time", "priority"] as const;

export function CreateDialog({ ctx, onClose }: { ctx: Ctx; onClose: Close }) {
  const [f, set] = useDraft("create", undefined, {
    type: "IMMEDIATE",
    service_name: ctx.services.length === 1 ? ctx.services[0]! : "",
    customer_number: "",
    date: tomorrow(),
    slot: "",
  });
  const [problem, setProblem] = useState<ProblemView | null>(null);
  const [busy, setBusy] = useState(false);
  const close = closing(onClose);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (f.type === "SCHEDULED" && !f.slot) {
      setProblem(NO_SLOT);
      return;
    }
    setBusy(true);
    const { data, error, response } = await ctx.api.POST("/api/v1/callbacks", {
      body: {
        type: f.type as "IMMEDIATE" | "SCHEDULED",
        service_name: f.service_name!.trim(),
        customer_number: f.customer_number!.trim(),
        desired_time: f.type === "SCHEDULED" ? f.slot : null,
      },
    });
    setBusy(false);
    if (data)
      close(
        data.type === "IMMEDIATE"
          ? `Immediate callback created for ${data.customer_number}: routing takes it now.`
          : `Callback to ${data.customer_number} scheduled for ${formatTime(data.desired_time, ctx.prefs)}.`,
      );
    else if (response.status !== 401) setProblem(problemView(response.status, error, CREATE_FIELDS));
  };
  const err = problem?.fields ?? {};
  /** Editing a field clears its error (the rest stay until the next answer). */
  const edit = (field: string, patch: Record<string, string>) => {
    set(patch);
    if (problem?.fields[field]) {
      const fields = { ...problem.fields };
      delete fields[field];
      setProblem(Object.keys(fields).length ? { ...problem, fields } : null);
    }
  };
  return (
    <Modal title="Create Callback" onClose={() => close()}>
      <form onSubmit={submit} noValidate>
        <ProblemBanner problem={problem} />
        <TypeRadios name="type" value={f.type!} onChange={(type) => set({ type })} />
        <FieldError id="type-error" text={err.type} />
        <label for="service">Service</label>
        <input
          id="service"
          list="granted-services"
          value={f.service_name}
          autocomplete="off"
          aria-invalid={!!err.service_name}
          aria-describedby={err.service_name ? "service-error" : undefined}
          onInput={(e) => edit("service_name", { service_name: (e.target as HTMLInputElement).value, slot: "" })}
        />
        <datalist id="granted-services">
          {ctx.services.map((s) => (
            <option value={s} />
          ))}
        </datalist>
        <FieldError id="service-error" text={err.service_name} />
        <label for="customer-number">Customer number</label>
        <input
          id="customer-number"
          type="tel"
          placeholder="+14155552671"
          value={f.customer_number}
          aria-invalid={!!err.customer_number}
          aria-describedby={err.customer_number ? "number-error" : undefined}
          onInput={(e) => edit("customer_number", { customer_number: (e.target as HTMLInputElement).value })}
        />
        <FieldError id="number-error" text={err.customer_number} />
        {f.type === "SCHEDULED" && (
          <SlotPicker
            ctx={ctx}
            service={f.service_name!.trim()}
            date={f.date!}
            slot={f.slot!}
            error={err.desired_time}
            onDate={(date) => set({ date, slot: "" })}
            onSlot={(slot) => edit("desired_time", { slot })}
          />
        )}
        <FieldError id="priority-error" text={err.priority} />
        <footer>
          <button type="button" onClick={() => close()}>
            Close
          </button>
          <button type="submit" class="primary" disabled={busy}>
            {f.type === "SCHEDULED" ? "Schedule" : "Create"}
          </button>
        </footer>
      </form>
    </Modal>
  );
}

function Summary({ cb, ctx }: { cb: Callback; ctx: Ctx }) {
  return (
    <dl class="summary">
      <dt>Phone Number</dt>
      <dd class="mono">{cb.customer_number}</dd>
      <dt>Service Name</dt>
      <dd>{cb.service_name}</dd>
      <dt>State</dt>
      <dd>
        {cb.state}
        {cb.result ? ` (${cb.result})` : ""}
      </dd>
      <dt>Desired Callback Time</dt>
      <dd>{formatTime(cb.desired_time, ctx.prefs)}</dd>
    </dl>
  );
}

export function EditDialog({ ctx, callback, onClose }: { ctx: Ctx; callback: Callback; onClose: Close }) {
  const [f, set] = useDraft("edit", callback.id, {
    date: dateInZone(new Date(callback.desired_time), browserTimeZone()),
    slot: "",
  });
  const [problem, setProblem] = useState<ProblemView | null>(null);
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const close = closing(onClose);
  const reschedule = async (e: Event) => {
    e.preventDefault();
    if (!f.slot) {
      setProblem(NO_SLOT);
      return;
    }
    setBusy(true);
    const { data, error, response } = await ctx.api.POST("/api/v1/callbacks/{callback_id}/reschedule", {
      params: { path: { callback_id: callback.id } },
      body: { desired_time: f.slot! },
    });
    setBusy(false);
    if (data) close(`Rescheduled to ${formatTime(data.desired_time, ctx.prefs)}.`);
    else if (response.status !== 401) setProblem(problemView(response.status, error, ["desired_time"]));
  };
  const cancel = async () => {
    setBusy(true);
    const { data, error, response } = await ctx.api.POST("/api/v1/callbacks/{callback_id}/cancel", {
      params: { path: { callback_id: callback.id } },
    });
    setBusy(false);
    if (data && response.status === 202) close("Cancel requested, waiting for routing.");
    else if (data) close(`Callback cancelled: ${data.state} (${data.result ?? ""}).`);
    else if (response.status !== 401) {
      setConfirming(false);
      setProblem(problemView(response.status, error));
    }
  };
  return (
    <Modal title="Edit Callback" onClose={() => close()}>
      <Summary cb={callback} ctx={ctx} />
      <ProblemBanner problem={problem} />
      {callback.can_reschedule && (
        <form onSubmit={reschedule} noValidate>
          <SlotPicker
            ctx={ctx}
            service={callback.service_name}
            date={f.date!}
            slot={f.slot!}
            error={problem?.fields.desired_time}
            onDate={(date) => set({ date, slot: "" })}
            onSlot={(slot) => set({ slot })}
          />
          <footer>
            <button type="submit" class="primary" disabled={busy}>
              Reschedule
            </button>
          </footer>
        </form>
      )}
      {callback.can_cancel && (
        <div class="danger-zone">
          {!confirming ? (
            <button class="danger" onClick={() => setConfirming(true)} disabled={busy}>
              Cancel Callback
            </button>
          ) : (
            <p role="alert">
              Cancel the callback to {callback.customer_number}?{" "}
              <button class="danger" onClick={cancel} disabled={busy}>
                Yes, cancel it
              </button>{" "}
              <button onClick={() => setConfirming(false)}>No, keep it</button>
            </p>
          )}
          <p class="hint">
            A callback that is due or with routing is cancelled by routing: it shows "cancel pending" until routing
            answers.
          </p>
        </div>
      )}
      <footer>
        <button type="button" onClick={() => close()}>
          Close
        </button>
      </footer>
    </Modal>
  );
}

export function RecreateDialog({ ctx, callback, onClose }: { ctx: Ctx; callback: Callback; onClose: Close }) {
  const [f, set] = useDraft("recreate", callback.id, { type: "IMMEDIATE", date: tomorrow(), slot: "" });
  const [problem, setProblem] = useState<ProblemView | null>(null);
  const [busy, setBusy] = useState(false);
  const close = closing(onClose);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (f.type === "SCHEDULED" && !f.slot) {
      setProblem(NO_SLOT);
      return;
    }
    setBusy(true);
    const { data, error, response } = await ctx.api.POST("/api/v1/callbacks/{callback_id}/recreate", {
      params: { path: { callback_id: callback.id } },
      body: { type: f.type as "IMMEDIATE" | "SCHEDULED", desired_time: f.type === "SCHEDULED" ? f.slot : null },
    });
    setBusy(false);
    if (data) close(`Callback recreated for ${data.customer_number} (${data.state}).`);
    else if (response.status !== 401) setProblem(problemView(response.status, error, ["type", "desired_time", "priority"]));
  };
  return (
    <Modal title="Recreate Callback" onClose={() => close()}>
      <Summary cb={callback} ctx={ctx} />
      <p class="hint">
        A new callback for the same customer and service, linked to this one. The customer's name recording is kept
        when the callback is recreated within 4 days of the original's completion.
      </p>
      <form onSubmit={submit} noValidate>
        <ProblemBanner problem={problem} />
        <TypeRadios name="rtype" value={f.type!} onChange={(type) => set({ type })} />
        {f.type === "SCHEDULED" && (
          <SlotPicker
            ctx={ctx}
            service={callback.service_name}
            date={f.date!}
            slot={f.slot!}
            error={problem?.fields.desired_time}
            onDate={(date) => set({ date, slot: "" })}
            onSlot={(slot) => set({ slot })}
          />
        )}
        <footer>
          <button type="button" onClick={() => close()}>
            Close
          </button>
          <button type="submit" class="primary" disabled={busy}>
            Recreate
          </button>
        </footer>
      </form>
    </Modal>
  );
}
