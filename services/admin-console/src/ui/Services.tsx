import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import type { ServiceView } from "../api/client";
import { problemView, type ProblemView } from "../lib/problems";
import {
  FORM_FIELDS,
  WEEKDAYS,
  fieldId,
  settingsProblem,
  toForm,
  toSettings,
  type ServiceForm,
  type Weekday,
} from "../lib/serviceForm";
import { latestRead } from "../lib/reads";
import { clearDraft, loadDraft, saveDraft } from "../lib/storage";
import type { Ctx } from "./context";
import "./screens.css";

interface ServiceDraft {
  name: string;
  form: ServiceForm;
}

const DRAFT = "service";

function timeZones(): string[] {
  try {
    return (Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf("timeZone");
  } catch {
    return [];
  }
}

/** One labelled input with its refusal under it (the API's field `name`). */
function Field(props: {
  name: string;
  label: string;
  hint?: string;
  errors: Record<string, string>;
  children: (attrs: { id: string; "aria-invalid": boolean; "aria-describedby"?: string }) => ComponentChildren;
}) {
  const id = fieldId(props.name);
  const error = props.errors[props.name];
  const described = [error ? `${id}-error` : "", props.hint ? `${id}-hint` : ""].filter(Boolean).join(" ");
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      {props.children({ id, "aria-invalid": !!error, "aria-describedby": described || undefined })}
      {props.hint && (
        <p id={`${id}-hint`} class="hint">
          {props.hint}
        </p>
      )}
      {error && (
        <p id={`${id}-error`} class="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

type TextKey = {
  [K in keyof ServiceForm]: ServiceForm[K] extends string ? K : never;
}[keyof ServiceForm];

const DUPLICATE_CHECKS = [
  { value: "strict_1", label: "Strictly 1 open callback per number" },
  { value: "max_2", label: "At most 2 open callbacks per number" },
  { value: "off", label: "Off" },
] as const;

/** The Services page (administrators): a service's settings, viewed and edited. */
export function ServicesPage({ ctx, initial, onBack }: { ctx: Ctx; initial: string; onBack: () => void }) {
  const [name, setName] = useState(initial);
  const [typedName, setTypedName] = useState(initial);
  const [view, setView] = useState<ServiceView | null>(null);
  const [form, setFormState] = useState<ServiceForm | null>(null);
  const [problem, setProblem] = useState<ProblemView | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const zones = useMemo(timeZones, []);

  const begin = useMemo(latestRead, []);
  const load = async (service: string, keepDraft = true) => {
    const stillLatest = begin();
    setView(null);
    setForm(null, service);
    setProblem(null);
    if (!service) return;
    const { data, error, response } = await ctx.api.GET("/api/v1/services/{name}", { params: { path: { name: service } } });
    // another service chosen since: its settings, not these, belong in the form
    if (!stillLatest()) return;
    if (data) {
      setView(data);
      const draft = keepDraft ? loadDraft<ServiceDraft>(DRAFT) : null;
      setFormState(draft && draft.name === service ? draft.form : toForm(data.settings));
      if (draft && draft.name === service) setNotice("Your unsaved changes are back.");
    } else if (response.status !== 401) setProblem(problemView(response.status, error));
  };
  useEffect(() => void load(name), [name]);

  function setForm(next: ServiceForm | null, service = name) {
    setFormState(next);
    if (next) saveDraft(DRAFT, { name: service, form: next } satisfies ServiceDraft);
  }
  /** Editing a field clears its refusal (the others stay until the next answer). */
  const edit = (key: string, patch: Partial<ServiceForm>) => {
    if (!form) return;
    setForm({ ...form, ...patch });
    setNotice(null);
    if (problem?.fields[key]) {
      const fields = { ...problem.fields };
      delete fields[key];
      setProblem(Object.keys(fields).length ? { ...problem, fields } : null);
    }
  };
  const setOpenings = (day: Weekday, openings: ServiceForm["office_hours"][Weekday]) =>
    form && edit(`office_hours.${day}`, { office_hours: { ...form.office_hours, [day]: openings } });

  const save = async (e: Event) => {
    e.preventDefault();
    if (!form) return;
    setBusy(true);
    setNotice(null);
    const body = toSettings(name, form);
    const { data, error, response } = await ctx.api.PUT("/api/v1/services/{name}", { params: { path: { name } }, body });
    setBusy(false);
    if (data) {
      setView(data);
      setFormState(toForm(data.settings));
      clearDraft(DRAFT);
      setProblem(null);
      setNotice(`Settings of ${name} stored.`);
    } else if (response.status !== 401) {
      setProblem(settingsProblem(response.status, error, body));
    }
  };

  // a refusal: the first refused field gets the focus (it may be far above the Save button)
  useEffect(() => {
    const first = FORM_FIELDS.find((key) => problem?.fields[key]);
    if (first) document.getElementById(fieldId(first))?.focus();
  }, [problem]);

  const err = problem?.fields ?? {};
  const text = (key: TextKey, label: string, opts: { hint?: string; errorKey?: string; type?: string; list?: string } = {}) => (
    <Field name={opts.errorKey ?? key} label={label} hint={opts.hint} errors={err}>
      {(attrs) => (
        <input
          {...attrs}
          type={opts.type ?? "text"}
          inputMode={opts.type === "text" || opts.list ? undefined : "decimal"}
          list={opts.list}
          value={form![key]}
          onInput={(e) => edit(opts.errorKey ?? key, { [key]: (e.target as HTMLInputElement).value })}
        />
      )}
    </Field>
  );

  return (
    <section aria-labelledby="services-title" class="card services">
      <div class="services-head">
        <h2 id="services-title">Services</h2>
        <button type="button" class="link" onClick={onBack}>
          Back to Tools
        </button>
      </div>
      <form
        class="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setNotice(null);
          if (typedName.trim() === name) void load(name);
          else setName(typedName.trim());
        }}
      >
        <label for="service-pick">Service</label>
        <input
          id="service-pick"
          list="service-names"
          value={typedName}
          autocomplete="off"
          onInput={(e) => setTypedName((e.target as HTMLInputElement).value)}
        />
        <datalist id="service-names">
          {ctx.services.map((s) => (
            <option value={s} />
          ))}
        </datalist>
        <button type="submit">Open</button>
        {view && (
          <span class="muted">
            {view.stored ? "Stored settings." : "Nothing stored: the defaults apply until you save."}
          </span>
        )}
      </form>
      {!form && problem && (
        <p class="error" role="alert">
          {problem.message}
        </p>
      )}
      {form && (
        <form onSubmit={save} noValidate aria-label={`Settings of ${name}`} class="service-form">
          <div class="settings-grid">
            <fieldset>
              <legend>General</legend>
              {text("time_zone", "Time zone", { list: "time-zones", type: "text", hint: "IANA name, e.g. Europe/Berlin: office hours and closed dates are in it." })}
              <datalist id="time-zones">
                {zones.map((z) => (
                  <option value={z} />
                ))}
              </datalist>
              {text("default_country", "Default country", { type: "text", hint: "ISO 3166 code completing national numbers, e.g. US." })}
              {text("desired_window_seconds", "Desired window (seconds)", { hint: "How long after its desired time a callback is still on time." })}
            </fieldset>
            <fieldset>
              <legend>Slots and capacity</legend>
              {text("slot_length_minutes", "Slot length (minutes)")}
              {text("slot_capacity", "Slot capacity", { hint: "Callbacks one slot may hold." })}
              {text("schedule_horizon_days", "Schedule horizon (days)", { hint: "How far ahead a callback may be scheduled." })}
            </fieldset>
            <fieldset>
              <legend>Retries and routing</legend>
              {text("max_attempts", "Dial attempts", { errorKey: "dial_retry.max_attempts", hint: "Before the callback ends COMPLETED (FAILED)." })}
              {text("min_interval_seconds", "Wait between attempts (seconds)", { errorKey: "dial_retry.min_interval_seconds" })}
              {text("routing_silence_seconds", "Routing silence bound (seconds)", {
                hint: "A QUEUED or ROUTING callback silent this long: its attempt is closed as lost.",
              })}
              {text("processing_stall_seconds", "Processing stall bound (seconds)", {
                hint: "A PROCESSING callback not completed after this long is shown overdue.",
              })}
            </fieldset>
            <fieldset class="wide">
              <legend>Office hours and closed dates (the service's local time)</legend>
              <div class="hours-and-dates">
                <div>
                  {err.office_hours && <p class="field-error">{err.office_hours}</p>}
                  <table class="office-hours" aria-label="Office hours">
                    <tbody>
                      {WEEKDAYS.map((day) => (
                        <OpeningsRow
                          day={day}
                          openings={form.office_hours[day]}
                          error={err[`office_hours.${day}`]}
                          onChange={(o) => setOpenings(day, o)}
                        />
                      ))}
                    </tbody>
                  </table>
                  <p class="hint">A day with no opening is closed. Times as HH:MM; an opening may close at 24:00.</p>
                </div>
                <Field name="closed_dates" label="Dates the service is closed" hint="One local date per line, as YYYY-MM-DD." errors={err}>
                  {(attrs) => (
                    <textarea
                      {...attrs}
                      rows={5}
                      value={form.closed_dates}
                      onInput={(e) => edit("closed_dates", { closed_dates: (e.target as HTMLTextAreaElement).value })}
                    />
                  )}
                </Field>
              </div>
            </fieldset>
            <fieldset>
              <legend>Request guards</legend>
              <Field name="guards.duplicate_check" label="Duplicate check" errors={err}>
                {(attrs) => (
                  <select
                    {...attrs}
                    value={form.duplicate_check}
                    onChange={(e) =>
                      edit("guards.duplicate_check", {
                        duplicate_check: (e.target as HTMLSelectElement).value as ServiceForm["duplicate_check"],
                      })
                    }
                  >
                    {DUPLICATE_CHECKS.map((d) => (
                      <option value={d.value}>{d.label}</option>
                    ))}
                  </select>
                )}
              </Field>
              {text("max_requests_per_number_per_day", "Requests per number per day", {
                errorKey: "guards.max_requests_per_number_per_day",
                hint: "Empty: no cap.",
              })}
              {text("max_open_callbacks", "Open callbacks of the service", {
                errorKey: "guards.max_open_callbacks",
                hint: "Empty: no cap.",
              })}
              <Field name="guards.immediate_outside_office_hours" label="Immediate request outside office hours" errors={err}>
                {(attrs) => (
                  <select
                    {...attrs}
                    value={form.immediate_outside_office_hours}
                    onChange={(e) =>
                      edit("guards.immediate_outside_office_hours", {
                        immediate_outside_office_hours: (e.target as HTMLSelectElement)
                          .value as ServiceForm["immediate_outside_office_hours"],
                      })
                    }
                  >
                    <option value="refuse">Refuse</option>
                    <option value="accept">Accept</option>
                  </select>
                )}
              </Field>
              <label class="check plain">
                <input
                  type="checkbox"
                  checked={form.refuse_premium_rate}
                  onChange={(e) => edit("guards.refuse_premium_rate", { refuse_premium_rate: (e.target as HTMLInputElement).checked })}
                />
                Refuse premium-rate numbers
              </label>
              {err["guards.refuse_premium_rate"] && <p class="field-error">{err["guards.refuse_premium_rate"]}</p>}
            </fieldset>
          </div>
          <footer class="form-actions">
            <span class="form-message">
              {notice && (
                <span class="notice" role="status">
                  {notice}
                </span>
              )}
              {problem && (
                <span class="error" role="alert">
                  {problem.message}
                </span>
              )}
            </span>
            <button
              type="button"
              onClick={() => {
                clearDraft(DRAFT);
                setNotice(null);
                void load(name, false);
              }}
            >
              Revert
            </button>
            <button type="submit" class="primary" disabled={busy}>
              {busy ? "Saving…" : "Save settings"}
            </button>
          </footer>
        </form>
      )}
    </section>
  );
}

const DAY_LABEL = (day: string) => day[0]!.toUpperCase() + day.slice(1);

function OpeningsRow(props: {
  day: Weekday;
  openings: { opens: string; closes: string }[];
  error?: string;
  onChange: (o: { opens: string; closes: string }[]) => void;
}) {
  const { day, openings } = props;
  const label = DAY_LABEL(day);
  const errorId = props.error ? `${fieldId(`office_hours.${day}`)}-error` : undefined;
  const set = (i: number, patch: Partial<{ opens: string; closes: string }>) =>
    props.onChange(openings.map((o, j) => (j === i ? { ...o, ...patch } : o)));
  return (
    <tr>
      <th scope="row">{label}</th>
      <td>
        <div class="openings">
          {openings.length === 0 && <span class="muted">Closed</span>}
          {openings.map((o, i) => (
            <span class="opening">
              <input
                class="hhmm"
                id={i === 0 ? fieldId(`office_hours.${day}`) : undefined}
                aria-label={`${label} opening ${i + 1} opens`}
                aria-invalid={!!props.error}
                aria-describedby={errorId}
                value={o.opens}
                maxLength={5}
                onInput={(e) => set(i, { opens: (e.target as HTMLInputElement).value })}
              />
              <span aria-hidden="true">–</span>
              <input
                class="hhmm"
                aria-label={`${label} opening ${i + 1} closes`}
                aria-invalid={!!props.error}
                aria-describedby={errorId}
                value={o.closes}
                maxLength={5}
                onInput={(e) => set(i, { closes: (e.target as HTMLInputElement).value })}
              />
              <button
                type="button"
                class="icon-button"
                aria-label={`Remove ${label} opening ${i + 1}`}
                title="Remove this opening"
                onClick={() => props.onChange(openings.filter((_, j) => j !== i))}
              >
                ×
              </button>
            </span>
          ))}
          <button
            type="button"
            class="link"
            aria-label={`Add opening on ${label}`}
            onClick={() => props.onChange([...openings, openings.length ? { opens: "", closes: "" } : { opens: "08:00", closes: "18:00" }])}
          >
            + Add opening
          </button>
        </div>
        {props.error && (
          <p id={errorId} class="field-error">
            {props.error}
          </p>
        )}
      </td>
    </tr>
  );
}
