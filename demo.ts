/**
 * `deno task demo`: three `udpget serve` processes on loopback, one generated file fetched
 * from all three with the progress line visible, verified byte for byte, servers stopped. Then a
 * small swarm, the origin design's "manager": a tracker, one server capped at 8 MiB/s and four
 * fetchers started together, each saying how many bytes it got from the server and from peers.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { seededBytes, type ServerProcess, startServer, tempDir } from "./tests/harness.ts";
import { fileURLToPath } from "node:url";
import { startTracker, type TrackerProcess } from "./tests/tracker/tracker_process.ts";
import type { FetchReport } from "./lib/cli/fetch_report.ts";

const SIZE = 96 << 20;
const SWARM_SIZE = 32 << 20;
const SWARM_FETCHERS = 4;
const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const RUN = ["run", "--quiet", "--unstable-net", "-A", "--v8-flags=--max-semi-space-size=2", MAIN];

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function demo(): Promise<number> {
  const dir = await tempDir();
  const servers: ServerProcess[] = [];
  try {
    const root = `${dir.path}/served`;
    await Deno.mkdir(root);
    const data = seededBytes(SIZE, 2026);
    await Deno.writeFile(`${root}/demo.bin`, data);
    console.log(`demo: generated ${root}/demo.bin (${SIZE} bytes, sha256 ${sha256Hex(data)})`);
    for (let i = 0; i < 3; i++) servers.push(await startServer(root));
    const list = `${dir.path}/servers.txt`;
    await Deno.writeTextFile(list, servers.map((s) => `127.0.0.1 ${s.port}`).join("\n"));
    console.log(`demo: servers on 127.0.0.1 ports ${servers.map((s) => s.port).join(", ")}`);
    const args = ["fetch", list, "3", "demo.bin", "-o", "fetched.bin"];
    console.log(`demo: udpget ${args.join(" ")}`);
    const fetch = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--unstable-net",
        "-A",
        "--v8-flags=--max-semi-space-size=2",
        MAIN,
        ...args,
      ],
      cwd: dir.path,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (fetch.code !== 0) {
      console.error(`demo: fetch failed with exit code ${fetch.code}`);
      return fetch.code;
    }
    const got = await Deno.readFile(`${dir.path}/fetched.bin`);
    const same = sha256Hex(got) === sha256Hex(data);
    console.log(`demo: fetched.bin ${same ? "is identical to" : "DIFFERS from"} the source`);
    return same ? 0 : 1;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await dir.cleanup();
    console.log("demo: servers stopped, temp files removed");
  }
}

/** A tracker, one capped server and four fetchers sharing what they have. */
async function swarmDemo(): Promise<number> {
  const dir = await tempDir();
  let tracker: TrackerProcess | undefined;
  let server: ServerProcess | undefined;
  try {
    const root = `${dir.path}/served`;
    await Deno.mkdir(root);
    const data = seededBytes(SWARM_SIZE, 2027);
    await Deno.writeFile(`${root}/swarm.bin`, data);
    tracker = await startTracker();
    server = await startServer(root, ["--rate", "8Mi"]);
    await Deno.writeTextFile(`${dir.path}/servers.txt`, `127.0.0.1 ${server.port}\n`);
    console.log(
      `\ndemo: a swarm: tracker on 127.0.0.1:${tracker.port}, one server capped at 8 MiB/s, ` +
        `${SWARM_FETCHERS} fetchers of a ${SWARM_SIZE >> 20} MiB file started together`,
    );
    const args = (i: number) => [
      "fetch",
      "servers.txt",
      "2",
      "swarm.bin",
      "-o",
      `peer${i}.bin`,
      "--tracker",
      `127.0.0.1:${tracker!.port}`,
      "--seed-time",
      "3",
      "--json",
      "--quiet",
    ];
    console.log(`demo: udpget ${args(1).join(" ")}   (and peer2..peer${SWARM_FETCHERS})`);
    const started = performance.now();
    const runs = await Promise.all(
      Array.from({ length: SWARM_FETCHERS }, (_, i) =>
        new Deno.Command(Deno.execPath(), {
          args: [...RUN, ...args(i + 1)],
          cwd: dir.path,
          stdin: "null",
          stdout: "piped",
          stderr: "inherit",
        }).output()),
    );
    const want = sha256Hex(data);
    let ok = true;
    for (const [i, r] of runs.entries()) {
      const report = JSON.parse(new TextDecoder().decode(r.stdout)) as FetchReport;
      const same = r.code === 0 &&
        sha256Hex(await Deno.readFile(`${dir.path}/peer${i + 1}.bin`)) === want;
      ok &&= same;
      const sw = report.swarm;
      const mib = (n: number) => (n / (1 << 20)).toFixed(1);
      console.log(
        `demo: peer${i + 1}.bin ${same ? "identical" : "DIFFERS"}, in ${
          report.seconds.toFixed(1)
        } s: ` +
          `${mib(sw?.fromServers ?? 0)} MiB from the server, ${mib(sw?.fromPeers ?? 0)} MiB from ` +
          `${sw?.peers.filter((p) => p.bytes > 0).length ?? 0} peers`,
      );
    }
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    console.log(
      `demo: all ${SWARM_FETCHERS} done (seeding included) in ${secs} s; the server alone would ` +
        `need ${(SWARM_FETCHERS * SWARM_SIZE / (8 << 20)).toFixed(0)} s to send each a copy`,
    );
    return ok ? 0 : 1;
  } finally {
    await server?.stop();
    await tracker?.stop();
    await dir.cleanup();
    console.log("demo: tracker and server stopped, temp files removed");
  }
}

const first = await demo();
Deno.exit(first !== 0 ? first : await swarmDemo());
