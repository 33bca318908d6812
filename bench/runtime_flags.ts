/**
 * How the benches run udpget: every permission (`-A`), and the launcher's V8 setting (a 2 MiB
 * young generation, `bin/udpget.mjs`), so memory and speed are what a user gets.
 *
 * @module
 */

/** `deno` arguments before `main.ts`. */
export const BENCH_RUN_FLAGS: readonly string[] = [
  "run",
  "-A",
  "--v8-flags=--max-semi-space-size=2",
  "--quiet",
  "--unstable-net",
];
