/**
 * Interop: udpget fetchers swarm through opentracker (BEP 15 over UDP) as their tracker, in
 * whitelist mode with the info-hash `udpget swarm-id` prints. Needs the Debian package
 * `opentracker` (`.ci/run` installs it); without it the test fails saying so.
 */

import assert from "node:assert/strict";
import { seededBytes, startServer, tempDir, writeServersFile } from "../harness.ts";
import { TrackerClient } from "../tracker/tracker_process.ts";
import { autoPieceSize, digestFile } from "../../lib/io/file_digest.ts";
import { type Fetcher, fetcher, kill, sameAsSource } from "./swarm_fixture.ts";
import { infoHashHex, swarmId } from "../../lib/swarm/swarm_id.ts";
import { withTimeout } from "../../lib/io/timer.ts";

function freePort(): number {
  const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return port;
}

async function which(cmd: string): Promise<boolean> {
  const r = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`] }).output();
  return r.success;
}

Deno.test("interop: udpget fetchers swarm through opentracker", async () => {
  assert.ok(
    await which("opentracker"),
    "opentracker is not installed: this test needs it (apt-get install -y opentracker)",
  );
  const dir = await tempDir();
  // opentracker chroots into its directory and drops to nobody: it must be able to enter it
  const jail = `${dir.path}/jail`;
  await Deno.mkdir(jail);
  await Deno.chmod(dir.path, 0o755);
  await Deno.chmod(jail, 0o755);
  const root = `${dir.path}/root`;
  await Deno.mkdir(root);
  const size = 6 << 20;
  const data = seededBytes(size, 71);
  await Deno.writeFile(`${root}/f.bin`, data);
  using file = await Deno.open(`${root}/f.bin`);
  const infoHash = swarmId(await digestFile(file, size, autoPieceSize(size)));
  await Deno.writeTextFile(`${jail}/whitelist`, infoHashHex(infoHash) + "\n");
  const port = freePort();
  const tracker = new Deno.Command("opentracker", {
    args: [
      "-i",
      "127.0.0.1",
      "-p",
      String(port),
      "-P",
      String(port),
      "-d",
      jail,
      "-w",
      "/whitelist",
    ],
    stdout: "null",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const server = await startServer(root, ["--rate", "2Mi"]).catch(async (e) => {
    tracker.kill("SIGKILL");
    await tracker.status;
    throw e;
  });
  const fetchers: Fetcher[] = [];
  try {
    // it is up once it answers a BEP 15 connect
    const probe = new TrackerClient(port);
    try {
      for (let up = false; !up;) up = await probe.connect().then(() => true, () => false);
    } finally {
      probe.close();
    }
    await writeServersFile(dir.path, [server.port]);
    for (let i = 0; i < 3; i++) fetchers.push(fetcher(dir.path, i, port, ["--seed-time", "3"]));
    const outs = await withTimeout(Promise.all(fetchers.map((f) => f.done)), 120_000);
    assert.ok(
      outs,
      `the fetchers finished; their stderr:\n${
        fetchers.map((f, i) => `${i}: ${f.stderr().slice(-800)}`).join("\n")
      }`,
    );
    let fromPeers = 0;
    for (const [i, r] of outs.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(await sameAsSource(fetchers[i].out, data));
      assert.equal(r.report?.swarm?.infoHash, infoHashHex(infoHash));
      fromPeers += r.report?.swarm?.fromPeers ?? 0;
    }
    assert.ok(fromPeers > 0, "peers met through opentracker sent bytes");
  } finally {
    for (const f of fetchers) kill(f);
    await Promise.all(fetchers.map((f) => f.done.catch(() => {})));
    tracker.kill("SIGKILL");
    await tracker.status;
    await server.stop("SIGKILL");
    await dir.cleanup();
  }
});
