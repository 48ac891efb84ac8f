// The JS the console ships, gzipped (budget: 250 kB). Run after `npm run build`.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const dir = new URL("../dist/assets/", import.meta.url).pathname;
let total = 0;
for (const name of readdirSync(dir).filter((n) => n.endsWith(".js"))) {
  const size = gzipSync(readFileSync(join(dir, name)), { level: 9 }).length;
  total += size;
  console.log(`${name}: ${(size / 1024).toFixed(1)} kB gzipped`);
}
console.log(`total JS: ${(total / 1024).toFixed(1)} kB gzipped (budget 250 kB)`);
if (total > 250 * 1024) process.exit(1);
