/**
 * End to end: real `udpget serve` processes on ephemeral loopback ports and `udpget fetch`
 * run as a user would, comparing bytes. No timing assertions.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  exists,
  RUN_FLAGS,
  runUdpget,
  sameBytes,
  seededBytes,
  type ServerProcess,
  startServer,
  tempDir,
  withServers,
  writeServersFile,
} from "./harness.ts";
import { ExitCode } from "../lib/base/exit.ts";

const MiB = 1 << 20;

/** Server `i`'s line of a `--json` report. */
function serverReport(stdout: string, i: number): { status: string; bytes: number } {
  return (JSON.parse(stdout) as { servers: { status: string; bytes: number }[] }).servers[i];
}

async function fetchAndCompare(
  servers: ServerProcess[],
  root: string,
  work: string,
  size: number,
  connections: number,
): Promise<void> {
  const name = `f_${size}_${connections}.bin`;
  const data = seededBytes(size, size + connections);
  await Deno.writeFile(`${root}/${name}`, data);
  const list = await writeServersFile(work, servers.map((s) => s.port));
  const r = await runUdpget(["fetch", list, String(connections), name], work);
  assert.equal(r.code, 0, r.stderr);
  const got = await Deno.readFile(`${work}/${name}`);
  assert.ok(sameBytes(got, data), `bytes differ for size ${size}`);
  assert.equal(await exists(`${work}/${name}.part`), false);
  assert.match(r.stderr, /(sha256|pieces?) verified/);
}

Deno.test("e2e: edge sizes 0, 1, piece-1, piece, piece+1 from 3 servers", async () => {
  await withServers(3, async (servers, root, work) => {
    for (const size of [0, 1, MiB - 1, MiB, MiB + 1]) {
      await fetchAndCompare(servers, root, work, size, 3);
    }
  });
});

Deno.test("e2e: several MiB of random data with 1, 3 and 8 connections", async () => {
  await withServers(3, async (servers, root, work) => {
    for (const c of [1, 3, 8]) await fetchAndCompare(servers, root, work, 6 * MiB + 12345, c);
  });
});

Deno.test("e2e: -o names the output, an existing output needs --force", async () => {
  await withServers(2, async (servers, root, work) => {
    const data = seededBytes(300_000, 5);
    await Deno.writeFile(`${root}/src.bin`, data);
    const list = await writeServersFile(work, servers.map((s) => s.port));
    await Deno.writeTextFile(`${work}/mine.txt`, "precious");
    const refused = await runUdpget(["fetch", list, "2", "src.bin", "-o", "mine.txt"], work);
    assert.equal(refused.code, ExitCode.OutputExists, refused.stderr);
    assert.equal(await Deno.readTextFile(`${work}/mine.txt`), "precious");
    assert.equal(refused.stderr.trim().split("\n").length, 1, "one line of error");
    const forced = await runUdpget(
      ["fetch", list, "2", "src.bin", "-o", "mine.txt", "--force"],
      work,
    );
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${work}/mine.txt`), data));
  });
});

Deno.test("e2e: all servers down: exit code 4, no output, no .part", async () => {
  const dir = await tempDir();
  // Sockets that are open but never answer: nothing else can take their ports meanwhile.
  const silent = [0, 1].map(() =>
    Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" })
  );
  try {
    const list = await writeServersFile(
      dir.path,
      silent.map((s) => (s.addr as Deno.NetAddr).port),
    );
    const r = await runUdpget(["fetch", list, "2", "x.bin"], dir.path);
    assert.equal(r.code, ExitCode.Unreachable, r.stderr);
    assert.match(r.stderr, /no server answered/);
    assert.equal(await exists(`${dir.path}/x.bin`), false);
    assert.equal(await exists(`${dir.path}/x.bin.part`), false);
  } finally {
    for (const s of silent) s.close();
    await dir.cleanup();
  }
});

Deno.test("e2e: file missing on one server only; missing everywhere is exit 3", async () => {
  const dir = await tempDir();
  const roots = [`${dir.path}/a`, `${dir.path}/b`, `${dir.path}/c`];
  for (const r of roots) await Deno.mkdir(r);
  const data = seededBytes(2 * MiB + 3, 9);
  await Deno.writeFile(`${roots[1]}/f.bin`, data);
  await Deno.writeFile(`${roots[2]}/f.bin`, data);
  try {
    await withServers(3, async (servers, _root, work) => {
      const list = await writeServersFile(work, servers.map((s) => s.port));
      const r = await runUdpget(["fetch", list, "3", "f.bin", "--json"], work);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data));
      // two of three agree: the transfer may start (and end) before the third answers
      const missing = serverReport(r.stdout, 0);
      if (missing.status === "refused") {
        assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${servers[0].port}: NOT_FOUND`));
      } else assert.equal(missing.status, "unknown");
      const none = await runUdpget(["fetch", list, "3", "nope.bin"], work);
      assert.equal(none.code, ExitCode.NotFound, none.stderr);
      assert.equal(await exists(`${work}/nope.bin`), false);
    }, roots);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("e2e: a server with another version of the file is left out", async () => {
  const dir = await tempDir();
  const roots = [`${dir.path}/a`, `${dir.path}/b`, `${dir.path}/c`];
  for (const r of roots) await Deno.mkdir(r);
  const data = seededBytes(MiB + 100, 10);
  const other = seededBytes(MiB + 100, 11);
  await Deno.writeFile(`${roots[0]}/f.bin`, other);
  await Deno.writeFile(`${roots[1]}/f.bin`, data);
  await Deno.writeFile(`${roots[2]}/f.bin`, data);
  try {
    await withServers(3, async (servers, _root, work) => {
      const list = await writeServersFile(work, servers.map((s) => s.port));
      const r = await runUdpget(["fetch", list, "2", "f.bin", "--json"], work);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data));
      // two of three agree: the transfer may start (and end) before the odd one answers
      const odd = serverReport(r.stdout, 0);
      assert.equal(odd.bytes, 0);
      if (odd.status === "left_out") assert.match(r.stderr, /left out, it has another version/);
      else assert.equal(odd.status, "unknown");
    }, roots);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("e2e: a bad servers file line is reported with its line number (exit 2)", async () => {
  const dir = await tempDir();
  try {
    const list = `${dir.path}/servers.txt`;
    await Deno.writeTextFile(list, "# mirrors\r\n127.0.0.1 9000\r\n\r\nlocalhost:70000");
    const r = await runUdpget(["fetch", list, "2", "f.bin"], dir.path);
    assert.equal(r.code, ExitCode.Usage);
    assert.match(r.stderr, /servers\.txt:4: .*70000/);
    const bad = await runUdpget(["fetch", list, "zero", "f.bin"], dir.path);
    assert.equal(bad.code, ExitCode.Usage);
    assert.equal(bad.stderr.trim().split("\n").length, 1);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("e2e: IPv6; SIGTERM stops the server cleanly; a fetch is one transfer (start and end lines)", async () => {
  const dir = await tempDir();
  const server = await startServer(dir.path, [], "::1");
  try {
    const data = seededBytes(500_000, 12);
    await Deno.writeFile(`${dir.path}/six.bin`, data);
    const list = `${dir.path}/servers.txt`;
    await Deno.writeTextFile(list, `[::1]:${server.port}\n`);
    await Deno.mkdir(`${dir.path}/out`);
    const r = await runUdpget(["fetch", list, "2", "six.bin"], `${dir.path}/out`);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${dir.path}/out/six.bin`), data));
    const status = await server.stop("SIGTERM");
    assert.equal(status.code, 0);
    const lines = server.output().split("\n");
    const starts = lines.filter((l) =>
      / transfer \d+ start: "six\.bin" \(500000 bytes\) to \[::1\]:/.test(l)
    );
    const ends = lines.filter((l) =>
      / transfer \d+ end: "six\.bin" to \[::1\] \(\d+ ports?\): /.test(l)
    );
    assert.equal(starts.length, 1, server.output());
    assert.equal(ends.length, 1, server.output());
    assert.match(server.output(), /stopped: \d+ requests/);
  } finally {
    await server.stop("SIGKILL");
    await dir.cleanup();
  }
});

Deno.test("e2e: --checksum: the trusted digest passes, a wrong one is exit 5 and no file", async () => {
  await withServers(2, async (servers, root, work) => {
    const data = seededBytes(MiB + 5, 15);
    await Deno.writeFile(`${root}/c.bin`, data);
    const list = await writeServersFile(work, servers.map((s) => s.port));
    const good = createHash("sha256").update(data).digest("hex");
    const ok = await runUdpget(
      ["fetch", list, "2", "c.bin", "--checksum", `sha256=${good}`],
      work,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${work}/c.bin`), data));
    const wrong = "0".repeat(64);
    const bad = await runUdpget(
      ["fetch", list, "2", "c.bin", "-o", "d.bin", "--checksum", `sha256=${wrong}`],
      work,
    );
    assert.equal(bad.code, ExitCode.Verification, bad.stderr);
    assert.equal(await exists(`${work}/d.bin`), false);
    assert.equal(await exists(`${work}/d.bin.part`), false);
  });
});

Deno.test("e2e: without --allow-ffi both sides fall back to Deno.listenDatagram and say so", async () => {
  const { path: dir, cleanup } = await tempDir();
  const flags = RUN_FLAGS.filter((f) => f !== "--allow-ffi" && f !== "--allow-env");
  const main = new URL("../main.ts", import.meta.url).pathname;
  const server = new Deno.Command(Deno.execPath(), {
    args: [...flags, main, "serve", "0", "--root", dir, "--host", "127.0.0.1", "--no-cache"],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  try {
    const data = seededBytes(2 * MiB + 3, 77);
    await Deno.writeFile(`${dir}/n.bin`, data);
    const reader = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let first = "";
    while (!first.includes("\n")) first += (await reader.read()).value ?? "";
    assert.match(first, /on udp 127\.0\.0\.1:\d+ \(datagram I\/O: deno \(no --allow-ffi\)/);
    const port = Number(/:(\d+) /.exec(first)![1]);
    const list = await writeServersFile(dir, [port]);
    const run = (extra: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: [...flags, main, "fetch", list, "2", "n.bin", "-o", `${dir}/out.bin`, ...extra],
        cwd: dir,
        stdin: "null",
      }).output();
    const ok = await run(["--json"]);
    assert.equal(ok.code, 0, new TextDecoder().decode(ok.stderr));
    const io = JSON.parse(new TextDecoder().decode(ok.stdout)).io;
    assert.deepEqual([io.layer, io.fallbackReason], ["deno", "no --allow-ffi"]);
    assert.ok(sameBytes(await Deno.readFile(`${dir}/out.bin`), data));
    // demanding the batched layer where it cannot be had is a usage error, said in one line
    const demanded = await run(["--io", "ffi", "--force"]);
    assert.equal(demanded.code, ExitCode.Usage);
    assert.match(new TextDecoder().decode(demanded.stderr), /--io ffi: .*no --allow-ffi/);
    reader.releaseLock();
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await server.stdout.cancel().catch(() => {});
    await cleanup();
  }
});
