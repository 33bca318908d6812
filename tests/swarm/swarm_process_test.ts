/**
 * The swarm with real processes on loopback: `udpget tracker`, one capped `udpget serve` and
 * several `udpget fetch --tracker`. Correctness, not speed: identical files, bytes from peers,
 * a fetcher killed mid-swarm, a lying peer, a restarted or missing tracker. (Timing goals are in
 * `deno task bench`, scenario F.)
 */

import assert from "node:assert/strict";
import {
  MAIN,
  RUN_FLAGS,
  seededBytes,
  startServer,
  tempDir,
  writeServersFile,
} from "../harness.ts";
import { startTracker, TrackerClient } from "../tracker/tracker_process.ts";
import { type Fetcher, fetcher, kill, sameAsSource, swarm } from "./swarm_fixture.ts";
import { decode, encode, ErrorCode, fileIdOf, type Packet } from "../../lib/wire/packet.ts";
import { autoPieceSize, digestFile } from "../../lib/io/file_digest.ts";
import { swarmId } from "../../lib/swarm/swarm_id.ts";
import { withTimeout } from "../../lib/io/timer.ts";

const MiB = 1 << 20;

Deno.test("swarm: a tracker, one server and 6 fetchers end with identical files, most bytes from peers", async () => {
  const s = await swarm(16 * MiB, "4Mi", 61);
  try {
    const fs = Array.from({ length: 6 }, (_, i) => s.start(i, ["--seed-time", "4"]));
    const results = await Promise.all(fs.map((f) => f.done));
    let fromServers = 0;
    let fromPeers = 0;
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(await sameAsSource(fs[i].out, s.data), `fetcher ${i}'s file`);
      const sw = r.report?.swarm;
      assert.ok(sw, "the report has the swarm's part");
      assert.equal(sw.fromServers + sw.fromPeers, s.data.length);
      assert.equal(sw.peers.reduce((t, p) => t + p.bytes, 0), sw.fromPeers);
      fromServers += sw.fromServers;
      fromPeers += sw.fromPeers;
    }
    assert.ok(fromPeers > fromServers, `peers ${fromPeers} B, servers ${fromServers} B`);
  } finally {
    await s.close();
  }
});

Deno.test("swarm: a fetcher killed mid-swarm does not stall the others", async () => {
  const s = await swarm(12 * MiB, "3Mi", 62);
  try {
    const victim = s.start(0, ["--seed-time", "0"], { UDPGET_DEBUG: "1" });
    const others = [1, 2, 3].map((i) => s.start(i, ["--seed-time", "3"]));
    // the debug line says how many pieces it verified: kill it once it holds a few to share
    assert.ok(await victim.until(/debug: \d+ ([3-9]|\d\d+) /), victim.stderr());
    kill(victim);
    // (the server alone sends the three their 36 MiB in 12 s: a stall is far beyond a minute)
    const ends = await withTimeout(Promise.all(others.map((f) => f.done)), 60_000);
    assert.ok(ends, "the others are done within a minute of the kill");
    for (const [i, r] of ends.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(await sameAsSource(others[i].out, s.data));
    }
  } finally {
    await s.close();
  }
});

Deno.test("swarm: a lying peer is excluded and nothing wrong lands", async () => {
  const size = 8 * MiB;
  const s = await swarm(size, "2Mi", 63);
  const liar = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const announcer = new TrackerClient(s.tracker.port);
  let lies = 0;
  try {
    using file = await Deno.open(`${s.dir}/root/f.bin`);
    const d = await digestFile(file, size, autoPieceSize(size));
    const fileId = fileIdOf(d.digest);
    const pieces = d.pieceHashes.length / 32;
    const liarPort = (liar.addr as Deno.NetAddr).port;
    await announcer.announce({ infoHash: swarmId(d), port: liarPort, left: 0n });
    // the liar says it holds every piece and answers every range with garbage
    const serving = (async () => {
      for await (const [bytes, from] of liar) {
        const r = decode(bytes);
        if (!r.ok) continue;
        for (const p of lieAbout(r.packet, fileId, pieces)) {
          lies++;
          await liar.send(encode(p), from).catch(() => 0);
        }
      }
    })().catch(() => {});
    const fs = [0, 1, 2].map((i) => s.start(i, ["--seed-time", "2"]));
    const results = await Promise.all(fs.map((f) => f.done));
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(await sameAsSource(fs[i].out, s.data), `fetcher ${i}'s file is the true one`);
    }
    assert.ok(lies > 0, "the liar was asked");
    const excluded = results.flatMap((r) => r.report?.swarm?.peers ?? [])
      .filter((p) => p.peer === `127.0.0.1:${liarPort}`);
    assert.ok(excluded.length > 0, "the fetchers met the liar");
    assert.ok(
      excluded.every((p) => !p.alive && /excluded|failed the hash/.test(p.reason ?? "")),
      JSON.stringify(excluded),
    );
    liar.close();
    await serving;
  } finally {
    announcer.close();
    try {
      liar.close();
    } catch {
      // closed above
    }
    await s.close();
  }
});

/** What the liar answers: "I hold everything", and garbage for any range. */
function lieAbout(p: Packet, fileId: bigint, pieces: number): Packet[] {
  const base = { requestId: p.requestId, fileId };
  if (p.type === "have_request") {
    const entries = new Uint8Array(0);
    const fetching = new Uint8Array(0);
    return [{
      type: "have_reply",
      ...base,
      pieces,
      held: pieces,
      form: 1,
      first: 0,
      entries,
      fetching,
    }];
  }
  if (p.type === "peers_request") {
    return [{ type: "peers_reply", ...base, family: 4, entries: new Uint8Array(0) }];
  }
  if (p.type !== "chunk_request") return [];
  const out: Packet[] = [];
  for (let off = p.offset; off < p.offset + p.length; off += p.blockSize) {
    const n = Math.min(p.blockSize, p.offset + p.length - off);
    out.push({ type: "chunk_reply", ...base, offset: off, data: new Uint8Array(n).fill(0xee) });
  }
  return out;
}

Deno.test("swarm: an unreachable tracker or a share port in use costs only the swarm's help, with one line; a --host of the other family is a usage error", async () => {
  const s = await swarm(2 * MiB, "100Mi", 64);
  const quiet = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const f = fetcher(s.dir, 0, (quiet.addr as Deno.NetAddr).port, ["--seed-time", "0"]);
    s.fetchers.push(f);
    const r = await withTimeout(f.done, 60_000);
    assert.ok(r, "it finished");
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await sameAsSource(f.out, s.data));
    const warnings = r.stderr.split("\n").filter((l) => /tracker/.test(l));
    assert.ok(warnings.length <= 1, r.stderr);
    // a share port in use (that socket's): one line, and the servers deliver the file
    const port = (quiet.addr as Deno.NetAddr).port;
    const busy = fetcher(s.dir, 1, s.tracker.port, ["--seed-time", "0", "--share-port", `${port}`]);
    s.fetchers.push(busy);
    const b = await withTimeout(busy.done, 60_000);
    assert.ok(b, "it finished");
    assert.equal(b.code, 0, b.stderr);
    assert.ok(await sameAsSource(busy.out, s.data));
    assert.match(
      b.stderr,
      /^udpget: cannot share on 0\.0\.0\.0:\d+: .*; fetching without the swarm$/m,
    );
    // a --host of the other family than the servers': a usage error, nothing written
    const v6 = fetcher(s.dir, 2, s.tracker.port, ["--host", "::1"]);
    s.fetchers.push(v6);
    const u = await withTimeout(v6.done, 60_000);
    assert.ok(u, "it ended");
    assert.equal(u.code, 2, u.stderr);
    assert.match(u.stderr, /--host ::1 is ipv6, the servers ipv4: a swarm shares one family/);
    await assert.rejects(Deno.stat(v6.out));
  } finally {
    quiet.close();
    await s.close();
  }
});

Deno.test("swarm: fetchers survive a tracker restart and announce to the new one", async () => {
  const s = await swarm(8 * MiB, "1Mi", 65);
  try {
    using file = await Deno.open(`${s.dir}/root/f.bin`);
    const infoHash = swarmId(await digestFile(file, s.data.length, autoPieceSize(s.data.length)));
    const fs = [0, 1].map((i) => s.start(i, ["--seed-time", "2"]));
    // once both are in the swarm (the tracker counts them), the tracker dies and comes back
    const scraper = new TrackerClient(s.tracker.port);
    try {
      for (let n = 0; n < 2;) {
        const r = await scraper.scrape([infoHash]);
        n = r?.action === "scrape" ? r.entries[0].leechers + r.entries[0].seeders : 0;
        if (n < 2) await new Promise((w) => setTimeout(w, 100)); // (polling the tracker's count)
      }
    } finally {
      scraper.close();
    }
    await s.tracker.stop("SIGKILL");
    const port = s.tracker.port;
    // a new tracker on the same port: it knows no connection id, no peer
    const again = new Deno.Command(Deno.execPath(), {
      args: [...RUN_FLAGS, MAIN, "tracker", String(port), "--host", "127.0.0.1"],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    try {
      const results = await Promise.all(fs.map((f) => f.done));
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 0, r.stderr);
        assert.ok(await sameAsSource(fs[i].out, s.data));
      }
      // its totals line counts the announces it got
      again.kill("SIGTERM");
      const text = new TextDecoder().decode((await again.output()).stdout);
      const m = text.match(/stopped: (\d+) announces/);
      assert.ok(m && Number(m[1]) > 0, text);
    } finally {
      try {
        again.kill("SIGKILL");
      } catch {
        // exited
      }
      await again.status;
    }
  } finally {
    await s.close();
  }
});

Deno.test("swarm: a private swarm — key holders only, at the tracker, the server and the peers", async () => {
  const dir = await tempDir();
  const root = `${dir.path}/root`;
  await Deno.mkdir(root);
  const data = seededBytes(6 * MiB, 66);
  await Deno.writeFile(`${root}/f.bin`, data);
  const key = `${dir.path}/key`;
  await Deno.writeTextFile(key, "a shared secret of more than 16 bytes\n");
  const tracker = await startTracker(["--secret-file", key]);
  const server = await startServer(root, ["--rate", "2Mi", "--secret-file", key]);
  const fs: Fetcher[] = [];
  try {
    await writeServersFile(dir.path, [server.port]);
    for (let i = 0; i < 3; i++) {
      fs.push(fetcher(dir.path, i, tracker.port, ["--seed-time", "3", "--secret-file", key]));
    }
    const results = await Promise.all(fs.map((f) => f.done));
    let fromPeers = 0;
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(await sameAsSource(fs[i].out, data));
      fromPeers += r.report?.swarm?.fromPeers ?? 0;
    }
    assert.ok(fromPeers > 0, "the key holders met and shared");
    // a fetcher without the key is refused by the server, and so by the swarm
    const outsider = fetcher(dir.path, 9, tracker.port, ["--seed-time", "0"]);
    fs.push(outsider);
    const r = await outsider.done;
    assert.equal(r.code, 8, r.stderr);
  } finally {
    for (const f of fs) kill(f);
    await Promise.all(fs.map((f) => f.done.catch(() => {})));
    await tracker.stop("SIGKILL");
    await server.stop("SIGKILL");
    await dir.cleanup();
  }
});

Deno.test("swarm: a sharing fetcher serves nothing but verified pieces of its one file", async () => {
  const s = await swarm(8 * MiB, "512Ki", 67);
  const probe = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const tc = new TrackerClient(s.tracker.port);
  try {
    using file = await Deno.open(`${s.dir}/root/f.bin`);
    const d = await digestFile(file, s.data.length, autoPieceSize(s.data.length));
    const fileId = fileIdOf(d.digest);
    const f = s.start(0, ["--seed-time", "0"], { UDPGET_DEBUG: "1" });
    // it announces once it trusts the hashes; then the tracker lists it (an announce of ours)
    let peer: Deno.NetAddr | undefined;
    while (!peer) {
      const r = await tc.announce({ infoHash: swarmId(d), port: 1, left: 1n });
      const first = r?.action === "announce" ? r.peers[0] : undefined;
      if (first) {
        peer = {
          transport: "udp",
          hostname: first.slice(0, 4).join("."),
          port: (first[4] << 8) | first[5],
        };
      } else await new Promise((w) => setTimeout(w, 100)); // (polling the tracker)
    }
    let token = new Uint8Array(16);
    let id = 1;
    const ask = async (p: Record<string, unknown>): Promise<Packet[]> => {
      for (let attempt = 0; attempt < 2; attempt++) {
        const requestId = id++;
        await probe.send(encode({ requestId, token, ...p } as Packet), peer!);
        const got: Packet[] = [];
        for (;;) {
          const r = await withTimeout(probe.receive(), 500);
          if (!r) break;
          const dec = decode(r[0]);
          // (it meets whoever asks it, so its own requests to us come too: only answers count)
          if (dec.ok && dec.packet.requestId === requestId) got.push(dec.packet);
        }
        const retry = got.find((g) => g.type === "retry");
        if (retry?.type !== "retry") return got;
        token = retry.token.slice();
      }
      return [];
    };
    const chunk = { type: "chunk_request", blockSize: 1000, offset: 0, length: 4000 };
    // another file, by a name that would be outside any root: nothing
    const other = await ask({ ...chunk, fileId: fileId ^ 1n, name: "../../../../etc/passwd" });
    assert.deepEqual(other.map((p) => p.type === "error" && p.code), [ErrorCode.Stale]);
    // a piece it does not hold yet (its have-map says which it holds): NOT_HELD, no bytes
    const pieceSize = autoPieceSize(s.data.length); // (the server's, so the fetcher's)
    const haveRequest = { type: "have_request", fileId, since: 0, firstPiece: 0, name: "x" };
    /** The pieces its have-map lists, and those it says it fetches from a server now. */
    const holds = async (): Promise<{ pieces: number; held: Set<number>; busy: Set<number> }> => {
      const [have] = await ask(haveRequest);
      assert.ok(have?.type === "have_reply", "it answers HAVE");
      return { pieces: have.pieces, held: u32Set(have.entries), busy: u32Set(have.fetching) };
    };
    let refused = false;
    for (let round = 0; round < 3 && !refused; round++) {
      const h = await holds();
      // (and not one it is fetching now: that one may be verified any moment)
      const missing = [...Array(h.pieces).keys()].find((p) => !h.held.has(p) && !h.busy.has(p));
      assert.ok(missing !== undefined, "this early it lacks a piece (the server sends 0.5 MiB/s)");
      const offset = missing * pieceSize;
      const answer = await ask({ ...chunk, fileId, offset, name: "f.bin" });
      const sent = answer.filter((p) => p.type === "chunk_reply");
      if (sent.length === 0) {
        assert.deepEqual(answer.map((p) => p.type === "error" && p.code), [ErrorCode.NotHeld]);
        refused = true;
        continue;
      }
      // the asks wait for silence, a second or two under load: it may have begun and verified
      // that piece meanwhile, and then it must list it, and the bytes must be the file's
      assert.ok((await holds()).held.has(missing), `bytes of piece ${missing} it does not hold`);
      for (const p of sent) {
        assert.ok(p.type === "chunk_reply");
        assert.deepEqual(p.data, s.data.subarray(p.offset, p.offset + p.data.length));
      }
    }
    assert.ok(refused, "a piece it lacks is answered NOT_HELD");
    kill(f);
  } finally {
    tc.close();
    probe.close();
    await s.close();
  }
});

Deno.test("swarm: serve --tracker announces its files as a seed; fetchers do not take it as a peer", async () => {
  const dir = await tempDir();
  const root = `${dir.path}/root`;
  await Deno.mkdir(root);
  const data = seededBytes(3 * MiB, 68);
  await Deno.writeFile(`${root}/f.bin`, data);
  const tracker = await startTracker();
  const server = await startServer(root, ["--tracker", `127.0.0.1:${tracker.port}`]);
  const scraper = new TrackerClient(tracker.port);
  const probe = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  let f: Fetcher | undefined;
  try {
    using file = await Deno.open(`${root}/f.bin`);
    const d = await digestFile(file, data.length, autoPieceSize(data.length));
    for (let seeders = 0; seeders < 1;) {
      const r = await scraper.scrape([swarmId(d)]);
      seeders = r?.action === "scrape" ? r.entries[0].seeders : 0;
      if (seeders < 1) await new Promise((w) => setTimeout(w, 100)); // (polling the tracker)
    }
    // a peer reached through the swarm names the file by its id alone: the server answers
    const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: server.port };
    const have = {
      type: "have_request" as const,
      requestId: 5,
      fileId: fileIdOf(d.digest),
      since: 0,
      firstPiece: 0,
      name: "swarm",
    };
    let token = new Uint8Array(16);
    let reply: Packet | undefined;
    for (let i = 0; i < 2 && reply?.type !== "have_reply"; i++) {
      await probe.send(encode({ ...have, requestId: 5 + i, token }), to);
      const got = await withTimeout(probe.receive(), 2000);
      const r = got && decode(got[0]);
      reply = r && r.ok ? r.packet : undefined;
      if (reply?.type === "retry") token = reply.token.slice();
    }
    assert.ok(reply?.type === "have_reply" && reply.held === reply.pieces, "a seed's answer");
    await writeServersFile(dir.path, [server.port]);
    f = fetcher(dir.path, 0, tracker.port, ["--seed-time", "0"]);
    const r = await f.done;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(await sameAsSource(f.out, data));
    const peers = r.report?.swarm?.peers.map((p) => p.peer) ?? [];
    assert.ok(!peers.includes(`127.0.0.1:${server.port}`), JSON.stringify(peers));
    assert.match(server.output(), /announcing 1 file\(s\) as a seed/);
  } finally {
    if (f) kill(f);
    await f?.done.catch(() => {});
    scraper.close();
    probe.close();
    await tracker.stop("SIGKILL");
    await server.stop("SIGKILL");
    await dir.cleanup();
  }
});

Deno.test("swarm: on the pure-Deno datagram layer (--io deno) too", async () => {
  const s = await swarm(6 * MiB, "2Mi", 69);
  try {
    const fs = [0, 1, 2].map((i) => s.start(i, ["--seed-time", "3", "--io", "deno"]));
    let fromPeers = 0;
    for (const [i, r] of (await Promise.all(fs.map((f) => f.done))).entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.ok(await sameAsSource(fs[i].out, s.data));
      assert.equal(r.report?.io?.layer, "deno");
      fromPeers += r.report?.swarm?.fromPeers ?? 0;
    }
    assert.ok(fromPeers > 0, "the fallback layer's fetchers shared");
  } finally {
    await s.close();
  }
});

/** Big-endian u32 values of `bytes`, as a set. */
function u32Set(bytes: Uint8Array): Set<number> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const out = new Set<number>();
  for (let at = 0; at + 4 <= bytes.length; at += 4) out.add(view.getUint32(at));
  return out;
}
