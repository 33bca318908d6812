/**
 * What `udpget fetch` prints and where it writes, run as a user would (real processes on
 * loopback): `--quiet`, `--json`, `-o -` and devices, and the output checks made before any
 * network traffic.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  exists,
  MAIN,
  RUN_FLAGS,
  runUdpget,
  sameBytes,
  seededBytes,
  spawnUdpget,
  startServer,
  tempDir,
  withServers,
  writeServersFile,
} from "./harness.ts";
import { ExitCode } from "../lib/base/exit.ts";
import type { FetchReport } from "../lib/cli/fetch_report.ts";

const hex = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

Deno.test("fetch --quiet: nothing at all on success, the error alone on failure", async () => {
  await withServers(2, async (servers, root, work) => {
    const data = seededBytes(2_500_000, 31);
    await Deno.writeFile(`${root}/q.bin`, data);
    const list = await writeServersFile(work, servers.map((s) => s.port));
    const ok = await runUdpget(["fetch", list, "2", "q.bin", "--quiet"], work);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stderr, "", "no summary, no notes");
    assert.equal(ok.stdout, "");
    assert.ok(sameBytes(await Deno.readFile(`${work}/q.bin`), data));
    const missing = await runUdpget(["fetch", list, "2", "nope.bin", "-q"], work);
    assert.equal(missing.code, ExitCode.NotFound);
    assert.equal(missing.stderr.trim().split("\n").length, 1, missing.stderr);
    assert.match(missing.stderr, /^udpget: "nope.bin" is not available from any server/);
  });
});

Deno.test("fetch --json: one object on stdout, on success and on failure", async () => {
  await withServers(2, async (servers, root, work) => {
    const data = seededBytes(3_000_000, 32);
    await Deno.writeFile(`${root}/j.bin`, data);
    const list = await writeServersFile(work, servers.map((s) => s.port));
    const ok = await runUdpget(["fetch", list, "2", "j.bin", "--json", "-o", "out.bin"], work);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim().split("\n").length, 1, "exactly one line");
    const r = JSON.parse(ok.stdout) as FetchReport;
    assert.equal(r.ok, true);
    assert.equal(r.exitCode, 0);
    assert.equal(r.error, null);
    assert.equal(r.file, "j.bin");
    assert.equal(r.output, "out.bin");
    assert.equal(r.size, data.length);
    assert.equal(r.sha256, hex(data));
    assert.equal(r.bytes.fetched, data.length);
    assert.equal(r.bytes.resumed, 0);
    assert.equal(r.verification, "pieces");
    assert.ok(r.seconds > 0);
    assert.equal(r.servers.length, 2);
    assert.ok(r.servers.every((s) => s.status === "used" && s.reason === null));
    assert.equal(r.servers.reduce((t, s) => t + s.bytes, 0), data.length);
    assert.deepEqual(
      Object.keys(r),
      [
        "ok",
        "exitCode",
        "error",
        "file",
        "output",
        "size",
        "sha256",
        "seconds",
        "hashWaitSeconds",
        "bytes",
        "blockSize",
        "verification",
        "servers",
        "io",
        "swarm",
      ],
      "documented fields, in their documented order",
    );
    assert.equal(r.swarm, null, "no --tracker: no swarm");
    // the suite runs with --allow-ffi on x86_64 Linux: the batched layer carries the fetch
    assert.deepEqual(
      { layer: r.io?.layer, fallbackReason: r.io?.fallbackReason },
      { layer: "batched", fallbackReason: null },
    );
    assert.ok(r.io!.receiveBuffer > 212992, `receive buffer raised: ${r.io!.receiveBuffer}`);

    const bad = await runUdpget(["fetch", list, "2", "absent.bin", "--json"], work);
    assert.equal(bad.code, ExitCode.NotFound);
    const f = JSON.parse(bad.stdout) as FetchReport;
    assert.equal(f.ok, false);
    assert.equal(f.exitCode, ExitCode.NotFound);
    assert.match(f.error!, /not available from any server/);
    assert.equal(f.sha256, null);
    assert.deepEqual(f.servers.map((s) => s.status), ["refused", "refused"]);
    assert.match(f.servers[0].reason!, /NOT_FOUND/);
  });
});

Deno.test("fetch -o - and -o /dev/stdout: the verified file on stdout, nothing left behind", async () => {
  await withServers(2, async (servers, root, work) => {
    const data = seededBytes(5 * (1 << 20) + 777, 33);
    await Deno.writeFile(`${root}/s.bin`, data);
    const list = await writeServersFile(work, servers.map((s) => s.port));
    for (const target of ["-", "/dev/stdout"]) {
      const out = await spawnUdpget(["fetch", list, "2", "s.bin", "-o", target], work).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      assert.ok(sameBytes(out.stdout, data), `${target}: bytes differ`);
      assert.deepEqual([...Deno.readDirSync(work)].map((e) => e.name), ["servers.txt"]);
    }
  });
});

Deno.test("fetch: an output in the way is found before any network traffic", async () => {
  const dir = await tempDir();
  // a server that never answers: reaching the network would end in exit 4 after seconds
  const silent = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const list = await writeServersFile(dir.path, [(silent.addr as Deno.NetAddr).port]);
    await Deno.writeTextFile(`${dir.path}/x.bin`, "mine");
    const exists7 = await runUdpget(["fetch", list, "1", "x.bin"], dir.path);
    assert.equal(exists7.code, ExitCode.OutputExists, exists7.stderr);
    assert.match(exists7.stderr, /x.bin exists; use --force/);
    assert.equal(await Deno.readTextFile(`${dir.path}/x.bin`), "mine");
    const noDir = await runUdpget(["fetch", list, "1", "x.bin", "-o", "no/such/dir/x"], dir.path);
    assert.equal(noDir.code, ExitCode.LocalIo, noDir.stderr);
    assert.match(noDir.stderr, /no directory no\/such\/dir/);
    // a directory means the name inside it: a file there is in the way just the same
    await Deno.mkdir(`${dir.path}/d`);
    await Deno.writeTextFile(`${dir.path}/d/x.bin`, "mine too");
    const isDir = await runUdpget(["fetch", list, "1", "x.bin", "-o", "d"], dir.path);
    assert.equal(isDir.code, ExitCode.OutputExists, isDir.stderr);
    assert.match(isDir.stderr, /d\/x\.bin exists; use --force/);
    assert.equal(await exists(`${dir.path}/d.part`), false);
  } finally {
    silent.close();
    await dir.cleanup();
  }
});

/** `n` UDP ports nobody listens on (bound, then closed: the kernel answers them ICMP refused). */
function closedPorts(n: number): number[] {
  const socks = Array.from(
    { length: n },
    () => Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }),
  );
  const ports = socks.map((s) => (s.addr as Deno.NetAddr).port);
  for (const s of socks) s.close();
  return ports;
}

Deno.test("fetch: 47 closed ports among 50 servers are refused at once, in one line", async () => {
  await withServers(3, async (servers, root, work) => {
    const data = seededBytes(1_000_000, 35);
    await Deno.writeFile(`${root}/d.bin`, data);
    const dead = closedPorts(47);
    const list = await writeServersFile(work, [...servers.map((s) => s.port), ...dead]);
    const r = await runUdpget(["fetch", list, "4", "d.bin", "--json"], work);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${work}/d.bin`), data));
    const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("udpget: d.bin:"));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0],
      /^udpget: 47 servers, connection refused: 127\.0\.0\.1:\d+, .* and 44 more$/,
    );
    const report = JSON.parse(r.stdout) as FetchReport;
    const refused = report.servers.filter((s) => s.reason === "connection refused");
    assert.equal(refused.length, 47, "each says why in --json");
    assert.ok(refused.every((s) => s.status === "silent"));
    // all of them dead: the cause is the error line
    const none = await runUdpget([
      "fetch",
      await writeServersFile(work, dead.slice(0, 2)),
      "1",
      "d.bin",
      "-o",
      "none.bin",
    ], work);
    assert.equal(none.code, ExitCode.Unreachable, none.stderr);
    assert.match(none.stderr, /udpget: no server answered: connection refused\n$/);
  });
});

Deno.test("fetch -o DIR/ or an existing DIR saves inside it; -o - on a terminal is refused", async () => {
  await withServers(1, async (servers, root, work) => {
    const data = seededBytes(300_000, 36);
    await Deno.writeFile(`${root}/in.bin`, data);
    const list = await writeServersFile(work, servers.map((s) => s.port));
    await Deno.mkdir(`${work}/dl`);
    const slash = await runUdpget(["fetch", list, "1", "in.bin", "-o", "dl/", "-q"], work);
    assert.equal(slash.code, 0, slash.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${work}/dl/in.bin`), data));
    await Deno.mkdir(`${work}/dl2`);
    const plain = await runUdpget(["fetch", list, "1", "in.bin", "-o", "dl2", "-q"], work);
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${work}/dl2/in.bin`), data));
    const again = await runUdpget(["fetch", list, "1", "in.bin", "-o", "dl2", "-q"], work);
    assert.equal(again.code, ExitCode.OutputExists, "the file inside is protected as any other");
    const missing = await runUdpget(["fetch", list, "1", "in.bin", "-o", "nowhere/", "-q"], work);
    assert.equal(missing.code, ExitCode.LocalIo);
    assert.match(missing.stderr, /no directory nowhere/);
    // a terminal on stdout: `script` gives the process one
    const cmd = [Deno.execPath(), ...RUN_FLAGS, MAIN, "fetch", list, "1", "in.bin", "-o", "-"];
    const tty = await new Deno.Command("script", {
      args: ["-qec", cmd.map((a) => `'${a}'`).join(" "), "/dev/null"],
      cwd: work,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(tty.stdout);
    assert.equal(tty.code, ExitCode.Usage, text);
    assert.match(text, /refusing to write the file to a terminal: use -o FILE, or pipe/);
    assert.ok(text.length < 300, "no binary dumped");
  });
});

Deno.test("servers file: a duplicate is said and used once; a name that does not exist is exit 2", async () => {
  await withServers(1, async (servers, root, work) => {
    const data = seededBytes(10_000, 37);
    await Deno.writeFile(`${root}/s.bin`, data);
    const port = servers[0].port;
    const list = `${work}/servers.txt`;
    await Deno.writeTextFile(list, `127.0.0.1 ${port}\nudp://127.0.0.1:${port}/\n`);
    const dup = await runUdpget(["fetch", list, "1", "s.bin", "-q"], work);
    assert.equal(dup.code, 0, dup.stderr);
    assert.match(dup.stderr, /servers\.txt:2: duplicate of line 1 \(127\.0\.0\.1:\d+\), ignored\n/);
    await Deno.writeTextFile(list, `127.0.0.1 ${port}\nlocalhsot 9000\nbad line here\n`);
    const typo = await runUdpget(["fetch", list, "1", "s.bin", "-o", "t.bin"], work);
    assert.equal(typo.code, ExitCode.Usage, typo.stderr);
    const lines = typo.stderr.trim().split("\n");
    assert.match(lines[0], /servers\.txt:2: no such host localhsot$/);
    assert.match(lines[1], /servers\.txt:3: /);
    assert.equal(lines.length, 2, "every bad line, in file order, then the exit");
  });
});

Deno.test("fetch --json: after the file changed on every server, every server is reported dropped", async () => {
  await withServers(
    2,
    async (servers, root, work) => {
      await Deno.writeFile(`${root}/c.bin`, seededBytes(16 << 20, 38));
      const list = await writeServersFile(work, servers.map((s) => s.port));
      const fetch = spawnUdpget(["fetch", list, "2", "c.bin", "--json"], work);
      const result = fetch.output();
      // the event: the transfer is under way (its resume state is written before the .part)
      while (!(await exists(`${work}/c.bin.part`))) {
        await new Promise((r) => setTimeout(r, 20)); // polling the file system
      }
      await Deno.writeFile(`${root}/c.bin.new`, seededBytes(16 << 20, 39));
      await Deno.rename(`${root}/c.bin.new`, `${root}/c.bin`);
      const r = await result;
      const report = JSON.parse(new TextDecoder().decode(r.stdout)) as FetchReport;
      assert.equal(r.code, ExitCode.Unreachable, report.error ?? "");
      assert.match(report.error ?? "", /every server failed/);
      assert.deepEqual(
        report.servers.map((s) => [s.status, s.reason]),
        [["dropped", "STALE: file changed"], ["dropped", "STALE: file changed"]],
        "the report says what the error line says",
      );
    },
    undefined,
    ["--rate", "4M"],
  );
});

Deno.test("fetch: the only server killed mid-transfer is refused within about a second (batched layer)", async () => {
  const dir = await tempDir();
  const server = await startServer(dir.path, ["--rate", "4M"]);
  try {
    await Deno.writeFile(`${dir.path}/k.bin`, seededBytes(16 << 20, 40));
    const list = await writeServersFile(dir.path, [server.port]);
    const fetch = spawnUdpget(["fetch", list, "2", "k.bin", "-o", "out.bin"], dir.path);
    const result = fetch.output();
    while (!(await exists(`${dir.path}/out.bin.part`))) {
      await new Promise((r) => setTimeout(r, 20)); // polling the file system
    }
    const killed = performance.now();
    await server.stop("SIGKILL");
    const r = await result;
    const stderr = new TextDecoder().decode(r.stderr);
    console.log(`  exit ${((performance.now() - killed) / 1000).toFixed(2)} s after the kill`);
    assert.equal(r.code, ExitCode.Unreachable, stderr);
    assert.match(stderr, /dropped \(connection refused\)/);
    assert.match(stderr, /every server failed \(127\.0\.0\.1:\d+: connection refused\)/);
  } finally {
    await server.stop("SIGKILL");
    await dir.cleanup();
  }
});

Deno.test("fetch -o -: a reader that goes away ends the fetch (exit 6), it does not wait forever", async () => {
  const work = await tempDir();
  const server = await startServer(work.path);
  try {
    // larger than the stream's reorder buffer: with the reader gone, its slots never free up
    await Deno.writeFile(`${work.path}/s.bin`, seededBytes(96 << 20, 41));
    const list = await writeServersFile(work.path, [server.port]);
    const child = spawnUdpget(["fetch", list, "2", "s.bin", "-o", "-"], work.path);
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.getReader();
    await reader.read(); // the stream has started
    await reader.cancel(); // as `| head -c 1` does
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000); // a hang: killed, and it fails
    const status = await child.status;
    clearTimeout(guard);
    assert.equal(status.code, ExitCode.LocalIo, "ended by itself, as a local error");
    assert.match(await stderr, /cannot write the output: /);
  } finally {
    await server.stop("SIGKILL");
    await work.cleanup();
  }
});
