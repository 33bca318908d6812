/**
 * The fault matrix: real `udpget serve` processes, `udpget fetch` run as a user would, and
 * seeded impairing relays in between. Every case ends with the fetched bytes identical to the
 * source or, where no correct file is possible, the documented exit code and message.
 *
 * Losses, duplicates, reordering and corruption are decided by seeded PRNGs or by datagram
 * counts, so a failing case replays the same impairment. No timing assertions: the only
 * waiting is on events (a relay having carried N datagrams, a state file appearing), except
 * the blackhole, whose 2 s length is the fault itself.
 */

import assert from "node:assert/strict";
import {
  exists,
  runUdpget,
  sameBytes,
  seededBytes,
  type ServerProcess,
  spawnUdpget,
  tempDir,
  withServers,
  writeServersFile,
} from "./harness.ts";
import { type Impairments, mulberry32, UdpRelay } from "./relay.ts";
import { ExitCode } from "../lib/base/exit.ts";
import {
  decodeResumeState,
  encodeResumeState,
  freshState,
  markPiece,
  verifiedPieces,
} from "../lib/io/resume_state.ts";
import type { FileMeta } from "../lib/engine/consensus.ts";
import { sha256 } from "../lib/io/file_digest.ts";
import { partialPaths } from "../lib/io/partial_download.ts";
import { sleep } from "../lib/io/timer.ts";

const MiB = 1 << 20;
/** Smaller pieces than the default: more of them, so resume and blame have something to count. */
const PIECE = 256 << 10;
const SERVE_ARGS = ["--piece-size", String(PIECE)];
const CHUNK_REPLY = 4;
const CHUNK_DATA = 28; // offset of the data in a CHUNK_REPLY

/** What a relay in front of server `i` should do. */
interface RelaySpec {
  drop?: (random: () => number) => (dir: string, n: number, data: Uint8Array) => boolean;
  mutate?: (random: () => number) => (dir: string, n: number, data: Uint8Array) => void;
  more?: (random: () => number) => Impairments;
}

/**
 * Three servers over one root holding `data` as f.bin, each behind a relay built from `spec`
 * with its own PRNG seeded from `seed`; `body` gets the relays and the servers file.
 */
async function withRelays(
  data: Uint8Array,
  seed: number,
  spec: RelaySpec,
  body: (
    ctx: { relays: UdpRelay[]; servers: ServerProcess[]; list: string; work: string },
  ) => Promise<void>,
): Promise<void> {
  await withServers(
    3,
    async (servers, root, work) => {
      await Deno.writeFile(`${root}/f.bin`, data);
      const relays = servers.map((s, i) => {
        const random = mulberry32(seed * 31 + i);
        return new UdpRelay(
          s.port,
          spec.drop?.(random),
          spec.mutate?.(random),
          spec.more?.(random),
        );
      });
      try {
        const list = await writeServersFile(work, relays.map((r) => r.port));
        await body({ relays, servers, list, work });
      } finally {
        await Promise.all(relays.map((r) => r.close()));
      }
    },
    undefined,
    SERVE_ARGS,
  );
}

/** Fetches f.bin through the relays and checks the bytes; returns stderr. */
async function fetchIdentical(
  list: string,
  work: string,
  data: Uint8Array,
  extra: string[] = [],
): Promise<string> {
  const r = await runUdpget(["fetch", list, "3", "f.bin", ...extra], work);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data), "bytes differ");
  const { part, state } = partialPaths(`${work}/f.bin`);
  assert.equal(await exists(part), false);
  assert.equal(await exists(state), false);
  return r.stderr;
}

for (const [loss, seed] of [[0.01, 1], [0.05, 2], [0.2, 3]]) {
  Deno.test(`fault: ${loss * 100} % loss both ways on every path`, async () => {
    let stderr = "";
    const data = seededBytes(4 * MiB + 777, seed);
    await withRelays(data, seed, {
      drop: (random) => () => random() < loss,
    }, async ({ relays, list, work }) => {
      stderr = await fetchIdentical(list, work, data);
      const dropped = relays.reduce((n, r) => n + r.seen.to_client + r.seen.to_server, 0);
      assert.ok(dropped > 0, "traffic went through the relays");
    });
    // (at 1 % a run may lose no data block at all: requests lost are sent twice)
    if (loss >= 0.05) {
      assert.match(stderr, /re-requested [1-9]/, "losses were repaired by re-requests");
    }
  });
}

Deno.test("fault: a server whose first answer is lost joins the transfer late", async () => {
  const data = seededBytes(6 * MiB + 5, 9);
  // the third server's first datagram to the client (its answer to the metadata request) is
  // lost: two of three agree, so the transfer starts, and the third joins when it answers
  let made = 0;
  await withRelays(data, 9, {
    drop: () => {
      const server = made++; // relays are made in server order
      return (dir, n) => server === 2 && dir === "to_client" && n === 0;
    },
  }, async ({ relays, list, work }) => {
    const r = await runUdpget(
      ["fetch", list, "3", "f.bin", "--json", "--limit", "16M", "--block-size", "1444"],
      work,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.ok(relays[2].seen.to_client > 1, "the third server answered after the loss");
    const report = JSON.parse(r.stdout) as { servers: { status: string; bytes: number }[] };
    assert.deepEqual(
      report.servers.map((s) => s.status),
      ["used", "used", "used"],
      r.stdout + r.stderr,
    );
    assert.ok(report.servers.every((s) => s.bytes > 0), r.stdout);
    assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data), "bytes differ");
  });
});

Deno.test("fault: 5 % of datagrams duplicated", async () => {
  const data = seededBytes(4 * MiB + 3, 4);
  await withRelays(data, 4, {
    more: (random) => ({ duplicate: () => random() < 0.05 }),
  }, async ({ list, work }) => {
    await fetchIdentical(list, work, data);
  });
});

Deno.test("fault: reordering (10 % of datagrams overtaken by the next one)", async () => {
  const data = seededBytes(4 * MiB + 5, 5);
  await withRelays(data, 5, {
    more: (random) => ({ holdBack: () => random() < 0.1 }),
  }, async ({ list, work }) => {
    await fetchIdentical(list, work, data);
  });
});

Deno.test("fault: 1 % of data datagrams with a flipped bit: caught by piece hashes", async () => {
  const data = seededBytes(16 * MiB, 6);
  let chunks = 0;
  await withRelays(data, 6, {
    // every 100th CHUNK_REPLY (counted over all relays) gets one payload bit flipped
    mutate: (random) => (dir, _n, d) => {
      if (dir !== "to_client" || d[3] !== CHUNK_REPLY || d.length <= CHUNK_DATA) return;
      if (++chunks % 100 !== 50) return;
      const at = CHUNK_DATA + Math.floor(random() * (d.length - CHUNK_DATA));
      d[at] ^= 1 << Math.floor(random() * 8);
    },
  }, async ({ list, work }) => {
    const stderr = await fetchIdentical(list, work, data, ["--block-size", "32768"]);
    assert.match(stderr, /failed its SHA-256; fetching it again/);
  });
  assert.ok(chunks >= 500, `${chunks} chunk replies: at least 5 were corrupted`);
});

Deno.test("fault: blackhole, everything dropped for 2 s mid-transfer", async () => {
  const data = seededBytes(16 * MiB, 7);
  await withRelays(data, 7, {}, async ({ relays, list, work }) => {
    // (--limit: the transfer lasts long enough for the blackhole to fall in its middle)
    const run = runUdpget(["fetch", list, "3", "f.bin", "--limit", "8M"], work);
    const midway = await Promise.race([
      relays[0].after("to_client", 100).then(() => true),
      run.then(() => false),
    ]);
    assert.ok(midway, "the fetch ended before the blackhole");
    for (const r of relays) r.blackhole = true;
    await sleep(2000); // the length of the outage, not a synchronisation
    for (const r of relays) r.blackhole = false;
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data));
  });
});

Deno.test("fault: all servers gone mid-transfer: exit 4, .part kept; resumed once back", async () => {
  const data = seededBytes(16 * MiB, 8);
  await withRelays(data, 8, {}, async ({ relays, list, work }) => {
    const args = ["fetch", list, "3", "f.bin", "--block-size", "8944"];
    const run = runUdpget(args, work);
    // (any relay: two agreeing servers start the transfer, the third may join late)
    const midway = await Promise.race([
      ...relays.map((r) => r.after("to_client", 300).then(() => true)),
      run.then(() => false),
    ]);
    assert.ok(midway, "the fetch ended before the servers went away");
    for (const r of relays) r.blackhole = true;
    const gone = await run;
    assert.equal(gone.code, ExitCode.Unreachable, gone.stderr);
    assert.match(gone.stderr, /every server failed/);
    assert.match(gone.stderr, /kept .*f\.bin\.part .*run the same command again to resume/);
    const { part, state } = partialPaths(`${work}/f.bin`);
    assert.ok(await exists(part));
    const saved = decodeResumeState(await Deno.readTextFile(state));
    assert.ok(saved && verifiedPieces(saved).length > 0, "the state records verified pieces");
    assert.equal(await exists(`${work}/f.bin`), false);

    for (const r of relays) r.blackhole = false;
    const back = await runUdpget(args, work);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stderr, /resuming f\.bin: [1-9]\d* of 64 pieces already verified/);
    assert.match(back.stderr, /: \d[\d.]* [KM]iB resumed, [\d.]+ [KM]iB fetched in /);
    assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data));
    assert.equal(await exists(part), false);
    assert.equal(await exists(state), false);
  });
});

Deno.test("fault: client killed with SIGKILL, then the same command resumes", async () => {
  const data = seededBytes(16 * MiB, 9);
  await withRelays(data, 9, {}, async ({ list, work }) => {
    const args = ["fetch", list, "3", "f.bin"];
    const { part, state } = partialPaths(`${work}/f.bin`);
    const child = spawnUdpget([...args, "--limit", "4M"], work);
    let recorded = 0;
    try {
      recorded = await stateRecords(state, 4, child);
      child.kill("SIGKILL");
    } finally {
      await child.output().catch(() => {});
    }
    assert.ok(await exists(part));
    const r = await runUdpget(args, work);
    assert.equal(r.code, 0, r.stderr);
    const m = r.stderr.match(/resuming f\.bin: (\d+) of 64 pieces already verified/);
    assert.ok(m, r.stderr);
    assert.ok(Number(m[1]) >= recorded, `resumed ${m[1]} pieces, state had ${recorded}`);
    assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data));
  });
});

Deno.test("fault: Ctrl-C keeps .part and says where the state is; exit 130", async () => {
  const data = seededBytes(16 * MiB, 17);
  await withRelays(data, 17, {}, async ({ list, work }) => {
    const { part, state } = partialPaths(`${work}/f.bin`);
    const child = spawnUdpget(["fetch", list, "3", "f.bin", "--limit", "4M"], work);
    let out: Deno.CommandOutput;
    try {
      await stateRecords(state, 1, child);
      child.kill("SIGINT");
    } finally {
      out = await child.output();
    }
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, ExitCode.Interrupted, stderr);
    assert.match(
      stderr,
      /kept f\.bin\.part \(\d+ of 64 pieces verified; state in f\.bin\.part\.state\)/,
    );
    assert.ok(await exists(part));
    assert.ok(await exists(state));
  });
});

/**
 * Waits, on file events, until the state file at `state` records `n` verified pieces; fails
 * if `child` exits first.
 */
async function stateRecords(state: string, n: number, child: Deno.ChildProcess): Promise<number> {
  const watcher = Deno.watchFs(state.slice(0, state.lastIndexOf("/")));
  const exited = child.status.then((st) => {
    watcher.close();
    return st;
  });
  try {
    for await (const _ of watcher) {
      const s = decodeResumeState(await Deno.readTextFile(state).catch(() => ""));
      const recorded = s ? verifiedPieces(s).length : 0;
      if (recorded >= n) return recorded;
    }
  } finally {
    try {
      watcher.close();
    } catch { /* closed when the child exited */ }
  }
  throw new Error(`udpget exited (${(await exited).code}) before recording ${n} pieces`);
}

Deno.test("fault: a torn .part (bytes changed after a crash) is re-checked, not trusted", async () => {
  const data = seededBytes(2 * MiB, 10);
  await withRelays(data, 10, {}, async ({ list, work }) => {
    // a partial download claiming all 8 pieces, whose piece 3 was damaged on disk
    const { part, state } = partialPaths(`${work}/f.bin`);
    const torn = data.slice();
    torn[3 * PIECE + 17] ^= 0xff;
    await Deno.writeFile(part, torn);
    const s = freshState("f.bin", metaOf(data));
    for (let p = 0; p < 8; p++) markPiece(s, p);
    await Deno.writeTextFile(state, encodeResumeState(s));
    const r = await runUdpget(["fetch", list, "3", "f.bin"], work);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /7 of 8 pieces already verified, 1 failed its re-check/);
    assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data));
  });
});

Deno.test("fault: a .part udpget did not make is not overwritten without --force", async () => {
  const data = seededBytes(MiB, 11);
  await withRelays(data, 11, {}, async ({ list, work }) => {
    await Deno.writeTextFile(`${work}/f.bin.part`, "the user's own notes\n");
    const r = await runUdpget(["fetch", list, "3", "f.bin"], work);
    assert.equal(r.code, ExitCode.OutputExists, r.stderr);
    assert.match(r.stderr, /f\.bin\.part exists and is not a udpget partial download/);
    assert.equal(await Deno.readTextFile(`${work}/f.bin.part`), "the user's own notes\n");
    await fetchIdentical(list, work, data, ["--force"]);
  });
});

Deno.test("fault: .part of another version on the servers: starts over and says so", async () => {
  const data = seededBytes(MiB, 12);
  await withRelays(data, 12, {}, async ({ list, work }) => {
    const { part, state } = partialPaths(`${work}/f.bin`);
    const old = seededBytes(MiB, 99);
    await Deno.writeFile(part, old);
    const s = freshState("f.bin", metaOf(old));
    markPiece(s, 0);
    await Deno.writeTextFile(state, encodeResumeState(s));
    const stderr = await fetchIdentical(list, work, data);
    assert.match(stderr, /holds another version .*; the servers' file changed, starting over/);
  });
});

Deno.test("fault: one of three servers killed mid-transfer", async () => {
  await withServers(3, async (servers, root, work) => {
    const data = seededBytes(24 * MiB, 77);
    await Deno.writeFile(`${root}/big.bin`, data);
    // Server 0 is reached through a relay, so the test knows when it is mid-transfer.
    const relay = new UdpRelay(servers[0].port);
    try {
      const list = await writeServersFile(work, [relay.port, servers[1].port, servers[2].port]);
      // small blocks: many datagrams, so "300 through the relay" is early in the transfer
      const args = [
        "fetch",
        list,
        "3",
        "big.bin",
        "--block-size",
        "1400",
        "--limit",
        "5M",
        "--json",
      ];
      // (--limit: the transfer outlasts the 3 s of silence after which a server is dropped)
      const run = runUdpget(args, work);
      const midway = await Promise.race([
        relay.after("to_client", 300).then(() => true),
        run.then(() => false),
      ]);
      assert.ok(midway, "the fetch ended before server 0 sent 300 datagrams");
      await servers[0].stop("SIGKILL");
      const r = await run;
      assert.equal(r.code, 0, r.stderr);
      assert.ok(sameBytes(await Deno.readFile(`${work}/big.bin`), data));
      // the others carried the file; the killed server is dropped once silent for 3 s with
      // requests timing out, which a transfer near its end (or one that stopped asking it) may
      // not reach
      const killed = (JSON.parse(r.stdout) as { servers: { status: string; bytes: number }[] })
        .servers[0];
      if (killed.status === "dropped") {
        assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${relay.port}: dropped`));
      } else assert.ok(killed.bytes < data.length / 4, JSON.stringify(killed));
    } finally {
      await relay.close();
    }
  });
});

Deno.test("fault: a server answering wrong bytes under correct headers is excluded", async () => {
  const data = seededBytes(8 * MiB, 13);
  await withRelays(data, 13, {}, async ({ relays, servers, work }) => {
    // server 0 is reached through a relay that flips one data byte of every CHUNK_REPLY
    const liar = new UdpRelay(servers[0].port, () => false, (dir, _n, d) => {
      if (dir === "to_client" && d[3] === CHUNK_REPLY && d.length > CHUNK_DATA) d[28] ^= 0x5a;
    });
    try {
      const list = await writeServersFile(work, [liar.port, relays[1].port, relays[2].port]);
      // (slow enough that the liar takes part even if its answer is the last of the three)
      const stderr = await fetchIdentical(list, work, data, ["--limit", "16M"]);
      assert.match(stderr, new RegExp(`${liar.port}: dropped \\(excluded: sent bytes`));
    } finally {
      await liar.close();
    }
  });
});

Deno.test("fault: the file modified on one server mid-transfer: that server is dropped", async () => {
  const dir = await tempDir();
  const roots = [0, 1, 2].map((i) => `${dir.path}/r${i}`);
  const data = seededBytes(16 * MiB, 14);
  try {
    for (const r of roots) {
      await Deno.mkdir(r);
      await Deno.writeFile(`${r}/f.bin`, data);
    }
    await withServers(
      3,
      async (servers, _root, work) => {
        const relay = new UdpRelay(servers[0].port);
        try {
          const list = await writeServersFile(work, [relay.port, servers[1].port, servers[2].port]);
          const run = runUdpget(["fetch", list, "3", "f.bin", "--limit", "16M"], work);
          const midway = await Promise.race([
            relay.after("to_client", 40).then(() => true),
            run.then(() => false),
          ]);
          assert.ok(midway, "the fetch ended before the file was modified");
          // same size, other bytes, written in place
          const f = await Deno.open(`${roots[0]}/f.bin`, { write: true });
          await f.write(seededBytes(MiB, 15));
          f.close();
          const r = await run;
          assert.equal(r.code, 0, r.stderr);
          assert.match(
            r.stderr,
            new RegExp(`${relay.port}: dropped \\((STALE: file changed|excluded)`),
          );
          assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data), "never a mix");
        } finally {
          await relay.close();
        }
      },
      roots,
      SERVE_ARGS,
    );
  } finally {
    await dir.cleanup();
  }
});

Deno.test("fault: servers disagree on size: the minority is left out; a tie is refused", async () => {
  const dir = await tempDir();
  const roots = [0, 1, 2].map((i) => `${dir.path}/r${i}`);
  const data = seededBytes(MiB + 10, 16);
  const longer = seededBytes(MiB + 1000, 16);
  try {
    for (const [i, r] of roots.entries()) {
      await Deno.mkdir(r);
      await Deno.writeFile(`${r}/f.bin`, i === 1 ? longer : data);
    }
    await withServers(3, async (servers, _root, work) => {
      const all = await writeServersFile(work, servers.map((s) => s.port));
      const r = await runUdpget(["fetch", all, "2", "f.bin", "--json"], work);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data));
      // two of three agree: the transfer may start (and even end) before the third answers
      const third = (JSON.parse(r.stdout) as { servers: { status: string; bytes: number }[] })
        .servers[1];
      assert.equal(third.bytes, 0);
      if (third.status === "left_out") {
        assert.match(r.stderr, /left out, it has another version \(1049576 bytes/);
      } else assert.equal(third.status, "unknown");

      const two = await writeServersFile(work, [servers[0].port, servers[1].port]);
      const tie = await runUdpget(["fetch", two, "2", "f.bin", "-o", "t.bin"], work);
      assert.equal(tie.code, ExitCode.Verification, tie.stderr);
      assert.match(tie.stderr, /no version has a majority; pass --checksum/);
      assert.equal(await exists(`${work}/t.bin`), false);
      assert.equal(await exists(`${work}/t.bin.part`), false);
    }, roots);
  } finally {
    await dir.cleanup();
  }
});

/** The metadata servers would announce for `data` with `PIECE`-byte pieces. */
function metaOf(data: Uint8Array): FileMeta {
  const hashes = new Uint8Array(Math.ceil(data.length / PIECE) * 32);
  for (let p = 0; p * PIECE < data.length; p++) {
    hashes.set(sha256(data.subarray(p * PIECE, (p + 1) * PIECE)), p * 32);
  }
  return {
    size: data.length,
    pieceSize: PIECE,
    maxBlock: 65000,
    mtimeMs: 0,
    digest: sha256(data),
    piecesRoot: sha256(hashes),
  };
}

Deno.test("fault (fallback layer, --io deno on both sides): 5 % loss, duplicates, reordering", async () => {
  const data = seededBytes(3 * MiB + 99, 21);
  let made = 0;
  await withServers(
    3,
    async (servers, root, work) => {
      await Deno.writeFile(`${root}/f.bin`, data);
      const relays = servers.map((s) => {
        const random = mulberry32(2100 + made++);
        return new UdpRelay(s.port, () => random() < 0.05, undefined, {
          duplicate: () => random() < 0.05,
          holdBack: () => random() < 0.05,
        });
      });
      try {
        const list = await writeServersFile(work, relays.map((r) => r.port));
        const r = await runUdpget(["fetch", list, "3", "f.bin", "--io", "deno", "--json"], work);
        assert.equal(r.code, 0, r.stderr);
        assert.ok(sameBytes(await Deno.readFile(`${work}/f.bin`), data), "bytes differ");
        const io = JSON.parse(r.stdout).io;
        assert.deepEqual([io.layer, io.fallbackReason], ["deno", "--io deno"]);
        assert.ok(relays.every((x) => x.seen.to_client > 0), "every path carried data");
        assert.ok(servers.every((x) => /datagram I\/O: deno/.test(x.output())));
      } finally {
        await Promise.all(relays.map((r) => r.close()));
      }
    },
    undefined,
    [...SERVE_ARGS, "--io", "deno"],
  );
});
