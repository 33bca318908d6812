/**
 * Path MTU discovery end to end, on a real kernel: `udpget serve` and `udpget fetch` in two
 * network namespaces joined by a veth pair (wan/lan_path.ts) whose MTUs the test sets. What is
 * asserted is the block size `--block-size auto` chose (from `--json`) and identical bytes: a
 * jumbo LAN gets jumbo datagrams, an Ethernet LAN or a jumbo server behind a 1500-byte hop gets
 * one frame's worth, and a server that cannot send unfragmented (the pure-Deno layer) is never
 * trusted with more than an Ethernet frame. Skipped, in one line, where namespaces cannot be made.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { lanAvailable, type LanPath, openLanPath } from "../../wan/lan_path.ts";
import { RUN_FLAGS, sameBytes, seededBytes, tempDir, untilListening } from "../harness.ts";

const MAIN = fileURLToPath(new URL("../../main.ts", import.meta.url));
const RUN = RUN_FLAGS.filter((f) => f !== "--allow-env");
const PORT = 9000; // each LAN has its own namespaces: a fixed port cannot clash
/** A fetch still running after this long is a hang: killed, and the test fails. */
const HANG_GUARD_MS = 60_000;

const unavailable = await lanAvailable();
if (unavailable) console.log(`path MTU end-to-end tests skipped: ${unavailable}`);

/** Starts `udpget serve` on `addr` (extra flags `more`) and waits for its listening line. */
async function serve(lan: LanPath, root: string, addr: string, more: string[]) {
  const argv = [Deno.execPath(), ...RUN, MAIN, "serve", String(PORT), "--root", root];
  const child = lan.spawn("server", [...argv, "--host", addr, "--no-cache", ...more], {
    stdout: "piped",
    stderr: "piped",
  });
  await untilListening(child, `udpget serve on ${addr}`);
  return child;
}

/**
 * Serves 4 MiB from the first server address (`serveFlags` added), fetches it with
 * `--block-size auto` across a LAN of these MTUs, and returns the block size the fetch used.
 */
async function chosenBlock(
  mtu: number,
  serverMtu: number,
  serveFlags: string[] = [],
): Promise<number> {
  const data = seededBytes(4 << 20, mtu + serverMtu);
  const dir = await tempDir();
  const lan = await openLanPath({ mtu, serverMtu });
  let guard: ReturnType<typeof setTimeout> | undefined;
  try {
    const root = `${dir.path}/root`;
    await Deno.mkdir(root);
    await Deno.writeFile(`${root}/f.bin`, data);
    await serve(lan, root, lan.serverAddrs[0], serveFlags);
    const list = `${dir.path}/servers.txt`;
    await Deno.writeTextFile(list, `${lan.serverAddrs[0]} ${PORT}\n`);
    const out = `${dir.path}/f.bin`;
    const fetch = lan.spawn("client", [
      Deno.execPath(),
      ...RUN,
      MAIN,
      "fetch",
      list,
      "2",
      "f.bin",
      "-o",
      out,
      "--json",
    ], { stdout: "piped", stderr: "piped" });
    let hung = false;
    guard = setTimeout(() => (hung = true, fetch.kill("SIGKILL")), HANG_GUARD_MS);
    const r = await fetch.output();
    const stderr = new TextDecoder().decode(r.stderr);
    assert.ok(!hung, `fetch still running after ${HANG_GUARD_MS / 1000} s: killed. ${stderr}`);
    assert.equal(r.code, 0, stderr);
    assert.ok(sameBytes(await Deno.readFile(out), data), "fetched bytes differ");
    return JSON.parse(new TextDecoder().decode(r.stdout)).blockSize;
  } finally {
    clearTimeout(guard);
    await lan.close();
    await dir.cleanup();
  }
}

Deno.test({
  name: "path MTU: a 9000-byte LAN gets jumbo blocks (8944 B), proven unfragmented",
  ignore: unavailable !== undefined,
  fn: async () => assert.equal(await chosenBlock(9000, 9000), 8944),
});

Deno.test({
  name: "path MTU: a 1500-byte LAN gets one Ethernet frame per block; the server says TOO_BIG",
  ignore: unavailable !== undefined,
  fn: async () => assert.equal(await chosenBlock(1500, 1500), 1444),
});

Deno.test({
  name: "path MTU: a jumbo server behind a 1500-byte hop (silent drops) gets Ethernet frames",
  ignore: unavailable !== undefined,
  fn: async () => assert.equal(await chosenBlock(1500, 9000), 1444),
});

Deno.test({
  name: "path MTU: a server on the pure-Deno layer cannot prove it: Ethernet frames on a jumbo LAN",
  ignore: unavailable !== undefined,
  fn: async () => assert.equal(await chosenBlock(9000, 9000, ["--io", "deno"]), 1444),
});
