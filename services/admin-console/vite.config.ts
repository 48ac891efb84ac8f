import preact from "@preact/preset-vite";
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "/console/",
  plugins: [preact()],
  build: { outDir: "dist", sourcemap: false, target: "es2022" },
  server: { proxy: { "/api": "http://127.0.0.1:8080", "/console/config.json": "http://127.0.0.1:8080" } },
  test: { environment: "node", include: ["src/**/*.test.ts", "test/**/*.test.ts"] },
});
