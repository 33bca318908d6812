#!/usr/bin/env node
/**
 * `npm run udpget` and `deno task udpget`: both run a script in the package root and put the
 * directory they were started from in INIT_CWD. Going back there first makes relative paths
 * mean what the user typed, as with the `udpget` command itself. (npm always sets INIT_CWD;
 * `deno task` keeps one it inherits, e.g. when run from inside an npm script.)
 *
 * @module
 */

if (process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
await import("./udpget.mjs");
