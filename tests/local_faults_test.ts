/**
 * Local faults are the fetcher's own, never the servers': a disk too small for the file is
 * refused before the transfer, a disk that fills up during it ends the fetch at once (exit 6,
 * one line naming the path and the cause, no server dropped) with the verified pieces kept for a
 * resume, and the rerun after space was freed ends byte-identical. Real faults on a real file
 * system: a small tmpfs, mounted for the test (the suite runs as root in CI; elsewhere these
 * tests say in one line why they are skipped). In a swarm, the same holds for peers: a sharing
 * fetcher whose disk fills blames none of them.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { run } from "../wan/wan_path.ts";
import { decodeResumeState, verifiedPieces } from "../lib/io/resume_state.ts";
import { PartialDownload } from "../lib/io/partial_download.ts";
import { ExitCode } from "../lib/base/exit.ts";
import {
  RUN_FLAGS,
  runUdpget,
  sameBytes,
  seededBytes,
  startServer,
  tempDir,
  writeServersFile,
} from "./harness.ts";
import { fetcher, kill, sameAsSource, swarm } from "./swarm/swarm_fixture.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const MiB = 1 << 20;

/** Why a tmpfs cannot be mounted here, or undefined when it can. */
async function tmpfsUnavailable(): Promise<string | undefined> {
  const id = await run("id", ["-u"]).catch(() => ({ code: -1, text: "" }));
  if (id.code !== 0 || id.text !== "0") return "mounting a tmpfs needs root";
  const dir = await Deno.makeTempDir();
  try {
    const m = await run("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir])
      .catch(() => ({ code: -1, text: "mount not found" }));
    if (m.code !== 0) return `cannot mount a tmpfs: ${m.text}`;
    await run("umount", [dir]);
    return undefined;
  } finally {
    await Deno.remove(dir).catch(() => {});
  }
}

const unavailable = await tmpfsUnavailable();
if (unavailable) console.log(`local fault tests skipped: ${unavailable}`);

/** Runs `body` with a tmpfs of `mib` MiB mounted on a fresh directory; unmounted after. */
async function withTmpfs(mib: number, body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const m = await run("mount", ["-t", "tmpfs", "-o", `size=${mib}m`, "tmpfs", dir]);
  assert.equal(m.code, 0, m.text);
  try {
    await body(dir);
  } finally {
    await run("umount", ["-l", dir]);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Fills the file system of `dir` to the last byte; the filler's path. */
async function fill(dir: string): Promise<string> {
  const path = `${dir}/filler`;
  const f = await Deno.open(path, { write: true, createNew: true });
  const chunk = new Uint8Array(MiB);
  try {
    for (let size = chunk.length; size > 0;) {
      try {
        await f.write(chunk.subarray(0, size));
      } catch {
        size >>= 1; // full at this size: the last pages go in smaller writes
      }
    }
  } finally {
    f.close();
  }
  return path;
}

const ignore = unavailable !== undefined;

/** `udpget fetch LIST 2 NAME -o -` in `cwd`, with its temporary copy under `tmpdir`. */
function streamWithTmpdir(list: string, name: string, cwd: string, tmpdir: string) {
  return new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, MAIN, "fetch", list, "2", name, "-o", "-"],
    cwd,
    env: { TMPDIR: tmpdir },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}

Deno.test({
  name: "disk full before the start: exit 6 at once, one line naming the path, nothing left",
  ignore,
  fn: async () => {
    const work = await tempDir();
    const server = await startServer(`${work.path}`);
    try {
      await Deno.writeFile(`${work.path}/f.bin`, seededBytes(16 * MiB, 61));
      const list = await writeServersFile(work.path, [server.port]);
      await withTmpfs(8, async (small) => {
        const r = await runUdpget(["fetch", list, "2", "f.bin", "-o", `${small}/f.bin`], work.path);
        assert.equal(r.code, ExitCode.LocalIo, r.stderr);
        assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
        assert.match(
          r.stderr,
          /not enough space for .*f\.bin\.part: 16 MiB needed, [\d.]+ \w+ free/,
        );
        assert.deepEqual([...Deno.readDirSync(small)], [], "no .part, no state left behind");
        // -o -: the temporary copy is refused the same way, and TMPDIR named as the way out
        const streamed = await streamWithTmpdir(list, "f.bin", work.path, small);
        const stderr = new TextDecoder().decode(streamed.stderr);
        assert.equal(streamed.code, ExitCode.LocalIo, stderr);
        assert.match(stderr, /not enough space for .*: 16 MiB needed.*TMPDIR/);
        assert.equal(streamed.stdout.length, 0, "not a byte on stdout");
        assert.deepEqual([...Deno.readDirSync(small)], [], "the temporary directory is gone");
      });
    } finally {
      await server.stop("SIGKILL");
      await work.cleanup();
    }
  },
});

Deno.test({
  name:
    "disk full mid-transfer: exit 6 at once, no server blamed, verified pieces kept; the rerun resumes",
  ignore,
  fn: async () => {
    const work = await tempDir();
    const data = seededBytes(16 * MiB, 62);
    // paced, so the disk can be filled while the transfer runs (4 s at 4 MiB/s)
    const server = await startServer(work.path, ["--rate", "4M"]);
    try {
      await Deno.writeFile(`${work.path}/f.bin`, data);
      const list = await writeServersFile(work.path, [server.port]);
      await withTmpfs(24, async (small) => {
        // without FFI nothing is preallocated: the writes themselves meet the full disk
        const fetch = new Deno.Command(Deno.execPath(), {
          args: [
            ...RUN_FLAGS.filter((f) => f !== "--allow-ffi"),
            MAIN,
            "fetch",
            list,
            "2",
            "f.bin",
          ],
          cwd: small,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const result = fetch.output();
        let seen = 0;
        try {
          // the event: the resume state records a verified piece (written once a second)
          const state = `${small}/f.bin.part.state`;
          for (let i = 0; i < 200 && seen === 0; i++) {
            const s = decodeResumeState(await Deno.readTextFile(state).catch(() => ""));
            seen = s ? verifiedPieces(s).length : 0;
            if (seen === 0) await new Promise((r) => setTimeout(r, 50)); // polling a file
          }
          assert.ok(seen > 0, "no piece verified within 10 s");
          const filled = performance.now();
          const filler = await fill(small);
          const r = await result;
          const stderr = new TextDecoder().decode(r.stderr);
          console.log(
            `  exit ${((performance.now() - filled) / 1000).toFixed(2)} s after the fill`,
          );
          assert.equal(r.code, ExitCode.LocalIo, stderr);
          assert.match(stderr, /cannot write f\.bin\.part: No space left on device\n/);
          assert.doesNotMatch(stderr, /no answer|every server|dropp|os error/, "no server blamed");
          const kept = decodeResumeState(await Deno.readTextFile(`${small}/f.bin.part.state`));
          const said = Number(stderr.match(/kept f\.bin\.part \((\d+) of 64 pieces verified/)?.[1]);
          assert.ok(said >= seen, stderr);
          assert.equal(kept && verifiedPieces(kept).length, said, "the state holds what it said");
          assert.deepEqual(
            [...Deno.readDirSync(small)].map((e) => e.name).sort(),
            ["f.bin.part", "f.bin.part.state", "filler"],
            "no temporary state file left",
          );
          await Deno.remove(filler);
          const again = await runUdpget(["fetch", list, "2", "f.bin", "--json"], small);
          assert.equal(again.code, 0, again.stderr);
          assert.ok(JSON.parse(again.stdout).bytes.resumed > 0, "resumed, not started over");
          assert.ok(sameBytes(await Deno.readFile(`${small}/f.bin`), data));
        } finally {
          try {
            fetch.kill("SIGKILL");
          } catch { /* ended */ }
          await result.catch(() => {});
        }
      });
    } finally {
      await server.stop("SIGKILL");
      await work.cleanup();
    }
  },
});

Deno.test({
  name: "disk full: the resume state still records what was verified (rewritten in place)",
  ignore,
  fn: () =>
    withTmpfs(4, async (small) => {
      const meta = {
        size: 2 * MiB,
        pieceSize: 256 << 10,
        maxBlock: 65000,
        digest: new Uint8Array(32).fill(1),
        piecesRoot: new Uint8Array(32).fill(2),
        mtimeMs: 0,
      };
      const p = await PartialDownload.open(`${small}/f.bin`, "f.bin", meta, false, () => {});
      const filler = await fill(small);
      p.recordVerified(3);
      p.recordVerified(5);
      await p.keep();
      // a temporary state file cannot get a block now: the old one was written over in place
      const s = decodeResumeState(await Deno.readTextFile(`${small}/f.bin.part.state`));
      assert.deepEqual(s && verifiedPieces(s), [3, 5]);
      assert.ok(!(await Deno.lstat(`${small}/f.bin.part.state.tmp`).catch(() => false)));
      await Deno.remove(filler);
    }),
});

Deno.test({
  name: "-o -: a file larger than TMPDIR's room streams through a bounded reorder buffer",
  ignore,
  fn: async () => {
    const work = await tempDir();
    const server = await startServer(work.path);
    try {
      const data = seededBytes(80 * MiB, 63);
      await Deno.writeFile(`${work.path}/s.bin`, data);
      const list = await writeServersFile(work.path, [server.port]);
      // 66 MiB: the 64 MiB ring fits, the 80 MiB file would not (it needed all of it before)
      await withTmpfs(66, async (small) => {
        const r = await streamWithTmpdir(list, "s.bin", work.path, small);
        assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
        assert.ok(sameBytes(r.stdout, data), "the stream is the file");
        assert.deepEqual([...Deno.readDirSync(small)], [], "the temporary directory is gone");
      });
    } finally {
      await server.stop("SIGKILL");
      await work.cleanup();
    }
  },
});

Deno.test({
  name:
    "disk full in a swarm: the sharing fetcher exits 6 blaming no peer and no server; the swarm goes on",
  ignore,
  fn: async () => {
    const s = await swarm(16 * MiB, "4M", 64);
    try {
      await withTmpfs(24, async (small) => {
        await Deno.copyFile(`${s.dir}/servers.txt`, `${small}/servers.txt`);
        const peer = s.start(0, ["--seed-time", "3"]);
        // (as above: without FFI nothing is preallocated, so the writes meet the full disk)
        const flags = RUN_FLAGS.filter((f) => f !== "--allow-ffi");
        const env = { UDPGET_DEBUG: "1" };
        const full = fetcher(small, 1, s.tracker.port, ["--seed-time", "0"], env, flags);
        try {
          // the event: the debug line shows a verified piece (shared from then on) and a peer
          // in the transfer (source ids from 1 << 24 are peers)
          const started = await full.until(/debug: \d+ [1-9]\d* [^\n]*\| 167772\d\d:/);
          assert.ok(started, full.stderr());
          const filler = await fill(small);
          const r = await full.done;
          assert.equal(r.code, ExitCode.LocalIo, r.stderr);
          assert.match(r.stderr, /cannot write out1\.bin\.part: No space left on device\n/);
          assert.doesNotMatch(r.stderr, /excluded|failed the hash/, "no peer blamed");
          assert.doesNotMatch(r.stderr, /no answer|every server|dropp|os error/, "no server");
          await Deno.remove(filler);
          const ok = await peer.done;
          assert.equal(ok.code, 0, ok.stderr);
          assert.ok(await sameAsSource(peer.out, s.data), "the other fetcher's file");
          assert.doesNotMatch(ok.stderr, /excluded/, "nobody excluded the fetcher that left");
        } finally {
          kill(full);
          await full.done.catch(() => {});
        }
      });
    } finally {
      await s.close();
    }
  },
});
