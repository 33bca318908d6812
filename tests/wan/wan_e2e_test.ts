/**
 * End to end across a real-kernel WAN path (wan/wan_path.ts): three `udpget serve` processes in
 * the servers' namespace, each behind its own emulated link, and `udpget fetch` in the client's
 * namespace, run as a user would. The bytes must come out identical. No timing assertions: the
 * only bound is a hang guard. Skipped, with the reason in one line, where WAN paths cannot be
 * opened (CI has root, TUN and cc, so CI runs them).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  openWanPath,
  totalOf,
  wanAvailable,
  type WanPath,
  type WanPathOptions,
} from "../../wan/wan_path.ts";
import { RUN_FLAGS, sameBytes, seededBytes, tempDir, untilListening } from "../harness.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));
/** The harness's flags (as the launcher's), without the environment the WAN tests do not need. */
const RUN = RUN_FLAGS.filter((f) => f !== "--allow-env");
const PORT = 9000; // each path has its own namespaces: a fixed port cannot clash
const MiB = 1 << 20;
/** A fetch still running after this long is a hang: killed, and the test fails. */
const HANG_GUARD_MS = 120_000;

const unavailable = await wanAvailable();
if (unavailable) console.log(`WAN end-to-end tests skipped: ${unavailable}`);

/** Starts `udpget serve` on every server address and waits for each listening line. */
async function startServers(path: WanPath, root: string): Promise<Deno.ChildProcess[]> {
  const started: Deno.ChildProcess[] = [];
  try {
    for (const addr of path.serverAddrs) {
      const child = path.command("server", Deno.execPath(), [
        ...RUN,
        MAIN,
        "serve",
        String(PORT),
        "--root",
        root,
        "--host",
        addr,
        "--no-cache",
      ], { stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
      started.push(child);
      await untilListening(child, `udpget serve on ${addr}`);
    }
    return started;
  } catch (e) {
    await killAll(started);
    throw e;
  }
}

async function killAll(children: Deno.ChildProcess[]): Promise<void> {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch { /* gone */ }
  }
  await Promise.allSettled(children.map((c) => c.status));
}

/**
 * Opens the path, serves `data` as f.bin from three servers, and runs `body` with a started
 * fetch of it; then checks exit 0 and identical bytes. Everything is stopped in `finally`.
 */
async function fetchAcross(
  opts: WanPathOptions,
  data: Uint8Array,
  during: (path: WanPath, fetch: Deno.ChildProcess) => Promise<void> = async () => {},
): Promise<void> {
  const dir = await tempDir();
  const path = await openWanPath(opts);
  let servers: Deno.ChildProcess[] = [];
  let fetch: Deno.ChildProcess | undefined;
  let guard: ReturnType<typeof setTimeout> | undefined;
  try {
    const root = `${dir.path}/root`;
    await Deno.mkdir(root);
    await Deno.writeFile(`${root}/f.bin`, data);
    servers = await startServers(path, root);
    const list = `${dir.path}/servers.txt`;
    await Deno.writeTextFile(list, path.serverAddrs.map((a) => `${a} ${PORT}`).join("\n"));
    const out = `${dir.path}/f.bin`;
    fetch = path.command("client", Deno.execPath(), [
      ...RUN,
      MAIN,
      "fetch",
      list,
      "4",
      "f.bin",
      "-o",
      out,
      "-q",
    ], { stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
    let hung = false;
    const f = fetch;
    guard = setTimeout(() => {
      hung = true;
      f.kill("SIGKILL");
    }, HANG_GUARD_MS);
    const result = f.output();
    await during(path, f);
    const r = await result;
    const stderr = new TextDecoder().decode(r.stderr);
    assert.ok(!hung, `fetch still running after ${HANG_GUARD_MS / 1000} s: killed. ${stderr}`);
    assert.equal(r.code, 0, stderr);
    assert.ok(sameBytes(await Deno.readFile(out), data), "fetched bytes differ");
  } finally {
    clearTimeout(guard);
    if (fetch) await killAll([fetch]);
    await killAll(servers);
    await path.close();
    await dir.cleanup();
  }
}

Deno.test({
  name: "WAN: 32 MiB from 3 mirrors at 20 Mbit/s each, 50 ms RTT, 3 % loss: identical bytes",
  ignore: unavailable !== undefined,
  fn: () =>
    fetchAcross(
      { servers: 3, rateMbit: 20, rttMs: 50, loss: 0.03, seed: 31 },
      seededBytes(32 * MiB, 31),
    ),
});

Deno.test({
  name: "WAN: a 3 s blackhole mid-transfer, then recovery: identical bytes",
  ignore: unavailable !== undefined,
  fn: () =>
    fetchAcross(
      { servers: 3, rateMbit: 20, rttMs: 50, loss: 0, seed: 32 },
      seededBytes(32 * MiB, 32),
      async (path, fetch) => {
        let exited = false;
        fetch.status.then(() => exited = true);
        // the event: 8 MiB have come down the links, so the transfer is well under way
        while (totalOf(await path.stats(), "forwardedBytes", "down") < 8 * MiB) {
          assert.ok(!exited, "fetch ended before 8 MiB had crossed the path");
          await new Promise((r) => setTimeout(r, 50)); // polling the emulator's counters
        }
        await path.control("blackhole 3000");
        // the blackhole must have hit the transfer, or this test tests nothing
        let hit = 0;
        for (let i = 0; i < 100 && hit === 0; i++) {
          hit = totalOf(await path.stats(), "droppedBlackhole");
          if (hit === 0) await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok(hit > 0, "no packet met the blackhole");
      },
    ),
});
