/**
 * Interop: two aria2c BitTorrent clients complete a private torrent through `udpget tracker`
 * over UDP on loopback, the tracker being the only way they can meet (private torrent: no DHT
 * peers, no local discovery, no peer exchange). aria2c speaks BEP 15 only with its DHT turned
 * on, so each instance gets its own DHT port and file.
 *
 * Needs aria2c and mktorrent (`apt-get install -y aria2 mktorrent`): without them the test
 * fails, saying so; it is never skipped.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { sameBytes, seededBytes, tempDir } from "../harness.ts";
import { withTimeout } from "../../lib/io/timer.ts";
import { toHex } from "../../lib/tracker/whitelist.ts";
import { startTracker, TrackerClient } from "./tracker_process.ts";

/** Longest the whole exchange may take before the test calls it a hang. */
const DEADLINE_MS = 20_000;

async function requireTool(cmd: string, pkg: string): Promise<void> {
  const r = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .output();
  if (r.code !== 0) {
    throw new Error(`${cmd} is not installed: this test needs it (apt-get install -y ${pkg})`);
  }
}

/** A port nobody listens on right now (TCP or UDP), found by binding port 0. */
function freePort(transport: "tcp" | "udp"): number {
  if (transport === "tcp") {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    return port;
  }
  const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return port;
}

/**
 * The info-hash of a torrent mktorrent wrote: SHA-1 of the bencoded `info` dictionary, which is
 * its last key (keys are sorted), so it runs from after `4:info` to the final `e`.
 */
function infoHash(torrent: Uint8Array): Uint8Array {
  const text = new TextDecoder("latin1").decode(torrent);
  const at = text.lastIndexOf("4:infod");
  assert.ok(at > 0 && text.endsWith("e"), "a torrent whose last key is info");
  const info = torrent.subarray(at + "4:info".length, torrent.length - 1);
  return new Uint8Array(createHash("sha1").update(info).digest());
}

/** A spawned aria2c: its output so far, its exit, and a kill for `finally`. */
function aria2c(dir: string, name: string, args: string[]) {
  const child = new Deno.Command("aria2c", {
    args: [
      "--no-conf",
      "--enable-dht=true", // aria2c sends UDP announces only with its DHT on
      "--enable-dht6=false",
      `--dht-file-path=${dir}/${name}.dht`,
      "--bt-enable-lpd=false",
      "--enable-peer-exchange=false",
      "--file-allocation=none",
      "--summary-interval=0",
      "--console-log-level=warn",
      ...args,
    ],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  const dec = new TextDecoder();
  const drain = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) out += dec.decode(chunk, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const status = child.status.then(async (s) => (await drained, s));
  return {
    status,
    output: () => out,
    kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    },
  };
}

/** Scrapes until the swarm has `seeders` seeders (the seed has announced); false at `deadline`. */
async function waitForSeeders(
  c: TrackerClient,
  hash: Uint8Array,
  seeders: number,
  deadline: number,
): Promise<boolean> {
  while (Date.now() < deadline) {
    const r = await c.scrape([hash]);
    if (r?.action === "scrape" && r.entries[0].seeders === seeders) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return false;
}

Deno.test("interop: two aria2c clients complete a private torrent through udpget tracker", async () => {
  await requireTool("aria2c", "aria2");
  await requireTool("mktorrent", "mktorrent");
  const deadline = Date.now() + DEADLINE_MS;
  const dir = await tempDir();
  const tracker = await startTracker();
  const client = new TrackerClient(tracker.port);
  const spawned: ReturnType<typeof aria2c>[] = [];
  try {
    await Deno.mkdir(`${dir.path}/src`);
    await Deno.mkdir(`${dir.path}/out`);
    const data = seededBytes(4 << 20, 15);
    await Deno.writeFile(`${dir.path}/src/f.bin`, data);
    const mk = await new Deno.Command("mktorrent", {
      args: [
        "-p",
        "-l",
        "18",
        "-a",
        `udp://127.0.0.1:${tracker.port}/announce`,
        "-o",
        "f.torrent",
        "src/f.bin",
      ],
      cwd: dir.path,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(mk.code, 0, new TextDecoder().decode(mk.stderr));
    const hash = infoHash(await Deno.readFile(`${dir.path}/f.torrent`));

    const seed = aria2c(dir.path, "seed", [
      `--listen-port=${freePort("tcp")}`,
      `--dht-listen-port=${freePort("udp")}`,
      "--check-integrity=true",
      "--seed-ratio=0.0",
      "-d",
      "src",
      "f.torrent",
    ]);
    spawned.push(seed);
    assert.ok(
      await waitForSeeders(client, hash, 1, deadline),
      `the seed never announced ${toHex(hash)}: ${seed.output()}\n${tracker.output()}`,
    );

    const leech = aria2c(dir.path, "leech", [
      `--listen-port=${freePort("tcp")}`,
      `--dht-listen-port=${freePort("udp")}`,
      "--seed-time=0", // exits once the download is complete
      "-d",
      "out",
      "f.torrent",
    ]);
    spawned.push(leech);
    const status = await withTimeout(leech.status, deadline - Date.now());
    assert.ok(status, `the leecher did not finish in time: ${leech.output()}`);
    assert.equal(status.code, 0, leech.output());
    assert.ok(sameBytes(await Deno.readFile(`${dir.path}/out/f.bin`), data), "identical bytes");
    // the leecher said stopped when it left: the tracker dropped it at once
    const after = await client.scrape([hash]);
    assert.ok(after?.action === "scrape");
    assert.deepEqual([after.entries[0].seeders, after.entries[0].leechers], [1, 0]);
  } finally {
    for (const p of spawned) p.kill();
    await Promise.all(spawned.map((p) => p.status));
    client.close();
    await tracker.stop();
    await dir.cleanup();
  }
});
