// The committed client types are what openapi-typescript makes of the committed OpenAPI
// document (tests/console/test_api_client.py checks that document against the app).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

describe("generated API client", () => {
  it("schema.d.ts equals openapi-typescript's output of openapi.json (run npm run gen:api)", () => {
    const root = new URL("..", import.meta.url).pathname;
    const out = join(mkdtempSync(join(tmpdir(), "console-api-")), "schema.d.ts");
    execFileSync(
      join(root, "node_modules/.bin/openapi-typescript"),
      ["src/api/openapi.json", "-o", out, "--default-non-nullable", "false"],
      { cwd: root, stdio: "pipe" },
    );
    expect(readFileSync(join(root, "src/api/schema.d.ts"), "utf8")).toBe(readFileSync(out, "utf8"));
  }, 30_000);
});
