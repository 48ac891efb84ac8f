import { describe, expect, it } from "vitest";
import { sessionFromToken, takeTokenFromLocation } from "../src/lib/auth";
import { can } from "../src/lib/roles";

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
const token = `${b64({ alg: "HS256" })}.${b64({ sub: "sam", roles: ["callback_supervisor"], services: ["*"], exp: 4102444800 })}.sig`;

describe("development sign-in", () => {
  it("reads sub, roles and services from the token's claims", () => {
    const s = sessionFromToken(token)!;
    expect([s.sub, s.roles, s.services]).toEqual(["sam", ["callback_supervisor"], ["*"]]);
    expect(can(s, "operate")).toBe(true);
    expect(can(sessionFromToken(`${b64({})}.${b64({ sub: "m", roles: ["callback_monitor"] })}.x`), "operate")).toBe(false);
    expect(sessionFromToken("not a token")).toBeNull();
  });
  it("moves #token= to sessionStorage and out of the address", () => {
    const store = new Map<string, string>();
    const storage = { setItem: (k: string, v: string) => store.set(k, v) } as unknown as Storage;
    let replaced = "";
    const history = { state: null, replaceState: (_s: unknown, _t: string, url: string) => (replaced = url) } as unknown as History;
    const loc = { hash: `#token=${token}`, pathname: "/console/", search: "" } as Location;
    expect(takeTokenFromLocation(loc, history, storage)?.sub).toBe("sam");
    expect(replaced).toBe("/console/");
    expect([...store.values()]).toEqual([token]);
  });
});
