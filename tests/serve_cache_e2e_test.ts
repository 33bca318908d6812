/**
 * `udpget serve` as a user runs it: the digest cache survives a restart (the second run hashes
 * nothing), `--log-format json` writes only JSON lines, and without permission to read the
 * environment the server still serves, without a cache, after one warning.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { seededBytes, startServer, tempDir } from "./harness.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

Deno.test("serve: a restart loads the digests from the cache instead of hashing again", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir.path}/root`);
    await Deno.writeFile(`${dir.path}/root/a.bin`, seededBytes(3 << 20, 1));
    await Deno.writeFile(`${dir.path}/root/b.bin`, seededBytes(1000, 2));
    const args = ["--cache-dir", `${dir.path}/cache`, "--log-format", "json"];
    const first = await startServer(`${dir.path}/root`, args);
    try {
      assert.ok(await first.until(/"event":"prehash_done"/), first.output());
    } finally {
      await first.stop();
    }
    const events1 = first.output().trim().split("\n").map((l) => JSON.parse(l));
    const done1 = events1.find((e) => e.event === "prehash_done");
    assert.deepEqual([done1.fields.from_cache, done1.fields.hashed], [0, 2]);
    for (const e of events1) {
      assert.equal(typeof e.ts, "string");
      assert.equal(typeof e.level, "string");
      assert.equal(typeof e.event, "string");
      assert.equal(typeof e.fields, "object");
    }
    const entries = [...Deno.readDirSync(`${dir.path}/cache/digests-v1`)];
    assert.equal(entries.length, 2);

    const second = await startServer(`${dir.path}/root`, args);
    try {
      assert.ok(await second.until(/"event":"prehash_done"/), second.output());
    } finally {
      await second.stop();
    }
    const events2 = second.output().trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(events2.filter((e) => e.event === "hashing").length, 0, second.output());
    const loaded = events2.find((e) => e.event === "cache_loaded");
    assert.equal(loaded?.fields.files, 2);
    const done = events2.find((e) => e.event === "prehash_done");
    assert.deepEqual([done.fields.from_cache, done.fields.hashed], [2, 0]);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("serve: without --allow-env it warns once and serves without a cache", async () => {
  const dir = await tempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--unstable-net",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      MAIN,
      "serve",
      "0",
      "--host",
      "127.0.0.1",
      "--root",
      dir.path,
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  try {
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (/background hashing done/.test(text)) break;
    }
    const warnings = text.split("\n").filter((l) => /digest cache disabled/.test(l));
    assert.equal(warnings.length, 1, text);
    assert.match(warnings[0], /warn: digest cache disabled: cannot read HOME or XDG_CACHE_HOME/);
    assert.match(text, /on udp 127\.0\.0\.1:\d+/);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stderr.cancel().catch(() => {});
    await dir.cleanup();
  }
});
