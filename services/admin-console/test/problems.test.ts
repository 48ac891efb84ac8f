import { describe, expect, it } from "vitest";
import { formField, problemView } from "../src/lib/problems";

describe("problem+json → field errors", () => {
  it("puts each field error at its field", () => {
    const body = {
      type: "about:blank",
      title: "Unprocessable Content",
      status: 422,
      detail: "customer_number: not a valid phone number",
      errors: [{ field: "customer_number", location: "body", message: "not a valid phone number" }],
    };
    expect(problemView(422, body, ["customer_number", "service_name"])).toEqual({
      message: "Please correct the marked fields.",
      fields: { customer_number: "Not a valid phone number." },
    });
  });
  it("names fields the form does not have in the message", () => {
    const body = { title: "x", status: 422, errors: [{ field: "body.priority", location: "body", message: "too big" }] };
    expect(problemView(422, body, ["customer_number"])).toEqual({ message: "Priority: too big.", fields: {} });
  });
  it("a 409 refusal shows the API's detail in plain words", () => {
    const body = { title: "Conflict", status: 409, detail: "the callback is PROCESSING: it cannot be cancelled" };
    expect(problemView(409, body)).toEqual({ message: "The callback is PROCESSING: it cannot be cancelled.", fields: {} });
  });
  it("no body: words for the status", () => {
    expect(problemView(403, undefined).message).toBe("You are not allowed to do this.");
    expect(problemView(418, null).message).toBe("Something went wrong (HTTP 418).");
  });
  it("field paths", () => {
    expect(formField("body.customer_number")).toBe("customer_number");
    expect(formField("desired_time")).toBe("desired_time");
  });
});
