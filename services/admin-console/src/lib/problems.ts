// problem+json (RFC 9457) answers of the API, in plain words at the field they concern.

export interface FieldError {
  field: string;
  location: string;
  message: string;
}

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string | null;
  errors?: FieldError[] | null;
  [extension: string]: unknown;
}

export interface ProblemView {
  /** What to show at the top of the dialog (what no field explains). */
  message: string;
  /** Field name (as the form names it) → message. */
  fields: Record<string, string>;
}

const STATUS_WORDS: Record<number, string> = {
  400: "The request was not understood.",
  401: "Your sign-in has expired. Sign in again.",
  403: "You are not allowed to do this.",
  404: "Not found: it may have expired or belong to a service you are not granted.",
  409: "Refused: the callback's state does not allow it.",
  422: "Please correct the marked fields.",
  429: "Too many open callbacks for this number or service.",
  503: "The service is unavailable right now. Try again shortly.",
};

/** The form's name of an API field (`body.customer_number` and `customer_number` alike). */
export function formField(field: string): string {
  const parts = field.split(".");
  const last = parts.filter((p) => !["body", "query", "path"].includes(p));
  return last.join(".") || field;
}

function sentence(text: string): string {
  const t = text.trim();
  if (!t) return t;
  const upper = t[0]!.toUpperCase() + t.slice(1);
  return /[.!?]$/.test(upper) ? upper : `${upper}.`;
}

/**
 * A problem document as the dialog shows it: each field error at its field (only fields the
 * form has: `known`), the rest and the detail at the top.
 */
export function problemView(status: number, body: unknown, known: readonly string[] = []): ProblemView {
  const problem: Problem = body && typeof body === "object" ? (body as Problem) : {};
  const fields: Record<string, string> = {};
  const unplaced: string[] = [];
  for (const error of problem.errors ?? []) {
    const name = formField(error.field);
    if (known.includes(name)) {
      fields[name] = fields[name] ? `${fields[name]} ${sentence(error.message)}` : sentence(error.message);
    } else {
      unplaced.push(`${name}: ${error.message}`);
    }
  }
  let message: string;
  if (Object.keys(fields).length && !unplaced.length) {
    message = STATUS_WORDS[422]!;
  } else if (unplaced.length) {
    message = sentence(unplaced.join("; "));
  } else if (problem.detail) {
    message = sentence(problem.detail);
  } else {
    message = STATUS_WORDS[status] ?? `Something went wrong (HTTP ${status}).`;
  }
  return { message, fields };
}
