/**
 * Bench scenario F (issue 16): one file to N fetchers at once on loopback, every uploader capped,
 * real processes side by side in one run. The lower bound is
 * T* = max(F/u_s, N·F/(u_s + N·u_i)) (u_s the first seed's upload cap, u_i each fetcher's), 16 s
 * for the defaults (128 MiB, 8 fetchers, 8 MiB/s).
 *
 * Rows, each with the first and the last fetcher done (seconds from the common start), last ÷
 * T*, the first seed's upload ÷ F where it can be measured, and every output checked by SHA-256:
 *
 * - aria2c BitTorrent + opentracker: a private torrent (`mktorrent -p -l 20`, HTTP announce),
 *   opentracker in whitelist mode, one aria2c seed and N aria2c leechers, all capped with
 *   `--max-overall-upload-limit`; each leecher's `--on-bt-download-complete` script stamps the
 *   time it is done (the leechers keep seeding until the last one is). The seed's upload is
 *   `uploadLength` from its JSON-RPC interface when the last leecher is done.
 * - udpget client/server: one `udpget serve --rate` and N `udpget fetch`; done is each fetch's
 *   exit. It takes N·F/u_s at best (128 s at the defaults); `BENCH_SWARM_CS=0` skips it.
 * - udpget swarm: `udpget serve --rate`, `udpget tracker` and N `udpget fetch --tracker
 *   --share-rate --seed-time --json`; done is when the fetch renames OUT.part to OUT (or exits).
 *   Then a late joiner: one more fetch once all N are done, timed against
 *   F/(u_s + k·u_i), k the fetchers still seeding when it starts. A fetch that rejects the swarm
 *   options (exit 2) makes the row "not available" with its error line.
 *
 * The servers' upload is from `udpget serve`'s JSON log (`stopped`: bytes sent; `transfer_*`
 * to tell the late joiner's part apart).
 *
 * Settings: `BENCH_SWARM_MIB` (file size, default 128), `BENCH_SWARM_N` (fetchers, default 8),
 * `BENCH_SWARM_RATE_MIB` (every upload cap in MiB/s, default 8), `BENCH_SWARM_CS=0` (skip the
 * client/server row), `BENCH_SWARM_TIMEOUT_S` (deadline of every row; default max(120, 8·T*) for
 * the peer-to-peer rows, 2·N·F/u_s + 60 for client/server). Needs aria2c, mktorrent, opentracker
 * (run as root: it chroots to a temp dir and drops to nobody), curl and sha256sum. Every process
 * is stopped and the temp dir removed when the scenario ends, fails or is interrupted.
 *
 * @module
 */

import { BENCH_RUN_FLAGS } from "./runtime_flags.ts";
import { dirname } from "node:path";
import { run } from "../wan/wan_path.ts";
import { withTimeout } from "../lib/io/timer.ts";
import type { LanRow } from "./lan.ts";
import { gist, sha256sum } from "./tool_output.ts";
import { sleep } from "../lib/io/timer.ts";

const MiB = 1 << 20;
const FILE = "s.bin";
/** Receive sockets per `udpget fetch`. */
const CONNECTIONS = "4";
/** `--seed-time` of the udpget swarm fetchers, seconds. */
const SEED_TIME_S = 20;
/** Kept of a process's stdout (the `--json` report and serve's log) and of its stderr's tail. */
const OUT_CAP = 1 << 20;
const ERR_TAIL = 8192;

/** Options of {@link runSwarmBench}. */
export interface SwarmBenchOptions {
  /** Path of udpget's main.ts. */
  main: string;
  /** Progress lines (stderr). */
  log: (msg: string) => void;
}

/** How a process ended: its exit code and `performance.now()` then. */
interface Exit {
  code: number;
  at: number;
}

/** A process the scenario started, its output drained as it comes (a full pipe would stall it). */
class Proc {
  out = "";
  #err = "";
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;

  constructor(
    readonly name: string,
    readonly child: Deno.ChildProcess,
    onLine?: (line: string) => void,
  ) {
    const out = (async () => {
      let part = "";
      for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) {
        if (this.out.length < OUT_CAP) this.out += c;
        if (!onLine) continue;
        part += c;
        for (let i = part.indexOf("\n"); i >= 0; i = part.indexOf("\n")) {
          onLine(part.slice(0, i));
          part = part.slice(i + 1);
        }
      }
      if (onLine && part !== "") onLine(part);
    })().catch(() => {});
    const err = (async () => {
      for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) {
        this.#err = (this.#err + c).slice(-ERR_TAIL);
      }
    })().catch(() => {});
    this.exited = (async () => {
      const s = await child.status;
      this.exit = { code: s.code, at: performance.now() };
      // a grandchild (aria2c's hook script) may hold the pipes a little longer
      await withTimeout(Promise.all([out, err]), 2000);
      return this.exit;
    })();
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Its error line: the telling line of stderr, else of stdout. */
  errLine(): string {
    return gist(this.#err) || gist(this.out);
  }

  /** Why it failed, in one line: the exit code and the error line. */
  why(): string {
    const e = this.exit ? `exit ${this.exit.code}` : "running";
    const g = this.errLine();
    return g ? `${e}: ${g}` : e;
  }

  kill(signal: Deno.Signal): void {
    if (!this.running) return;
    try {
      this.child.kill(signal);
    } catch { /* already gone */ }
  }
}

/** Every process the scenario started, to stop them all whatever happens. */
class Procs {
  readonly all: Proc[] = [];

  spawn(
    name: string,
    cmd: string,
    args: string[],
    opts: { cwd?: string; onLine?: (line: string) => void } = {},
  ): Proc {
    const child = new Deno.Command(cmd, {
      args,
      cwd: opts.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const p = new Proc(name, child, opts.onLine);
    this.all.push(p);
    return p;
  }

  /** SIGTERM (a last log line, a JSON report), then SIGKILL after `graceMs`. */
  async stop(list: Proc[] = this.all, graceMs = 3000): Promise<void> {
    for (const p of list) p.kill("SIGTERM");
    await withTimeout(Promise.all(list.map((p) => p.exited)), graceMs);
    for (const p of list) p.kill("SIGKILL");
    await withTimeout(Promise.all(list.map((p) => p.exited)), 3000);
  }

  /** From a signal handler: no waiting. */
  killAll(): void {
    for (const p of this.all) p.kill("SIGKILL");
  }
}

/** Shared by the rows. */
interface Ctx {
  main: string;
  log: (msg: string) => void;
  procs: Procs;
  dir: string;
  /** Directory holding FILE, the first seed's copy. */
  src: string;
  digest: string;
  size: number;
  n: number;
  /** Every upload cap, bytes/s. */
  rate: number;
  rateMiB: number;
  tStar: number;
  /** Deadline of a peer-to-peer row, seconds. */
  timeoutS: number;
}

/** `n` distinct free TCP ports on 127.0.0.1 (held together while chosen). */
function freePorts(n: number): number[] {
  const ls = Array.from({ length: n }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = ls.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of ls) l.close();
  return ports;
}

/** Polls `cond` every `everyMs` until it is true (true) or `ms` have passed (false). */
async function until(cond: () => boolean | Promise<boolean>, ms: number, everyMs = 50) {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (await cond()) return true;
    await sleep(everyMs);
  }
  return await cond();
}

/** How many of `paths` hold the source's bytes; the others by index. */
async function checkOutputs(
  paths: string[],
  digest: string,
): Promise<{ ok: number; bad: number[] }> {
  const bad: number[] = [];
  for (const [i, p] of paths.entries()) if ((await sha256sum(p)) !== digest) bad.push(i);
  return { ok: paths.length - bad.length, bad };
}

function shaNote(c: { ok: number; bad: number[] }, n: number): string {
  return c.bad.length === 0
    ? `${n}/${n} SHA-256 ok`
    : `SHA-256 WRONG for ${c.bad.length}/${n} (#${c.bad.join(", #")})`;
}

const s1 = (x: number) => `${x.toFixed(1)} s`;

/** The figure and the comparison of a row where `done` (seconds) fetchers finished. */
function timesRow(
  what: string,
  ctx: Ctx,
  done: number[],
  notes: string[],
): LanRow {
  const first = Math.min(...done);
  const last = Math.max(...done);
  return {
    scenario: "",
    what,
    value: `first ${s1(first)}, last ${s1(last)}`,
    note: [`last ÷ T* ${(last / ctx.tStar).toFixed(2)}`, ...notes].join("; "),
  };
}

function failedRow(what: string, value: string, note?: string): LanRow {
  return { scenario: "", what, value, note };
}

/** Text after the first `n` done fetchers of `total`, for a row that did not finish. */
function partial(done: number[], total: number): string {
  if (done.length === 0) return `0/${total} done`;
  return `${done.length}/${total} done, first ${s1(Math.min(...done))}, last ${
    s1(Math.max(...done))
  }`;
}

// ---------------------------------------------------------------- aria2c + opentracker

/** `d5:filesd20:…d8:completei1e…` → 1; undefined when the tracker does not answer. */
async function scrapeComplete(port: number, infoHash: string): Promise<number | undefined> {
  const q = infoHash.match(/../g)!.map((b) => `%${b}`).join("");
  const r = await run("curl", ["-s", "-m", "2", `http://127.0.0.1:${port}/scrape?info_hash=${q}`]);
  if (r.code !== 0) return undefined;
  const m = /8:completei(\d+)e/.exec(r.text);
  return m ? Number(m[1]) : /^d/.test(r.text) ? 0 : undefined;
}

/** Bytes an aria2c uploaded so far, through its JSON-RPC interface; undefined if it will not say. */
async function ariaUploaded(rpcPort: number): Promise<number | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${rpcPort}/jsonrpc`, {
      method: "POST",
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: "bench",
        method: "aria2.tellActive",
        params: [["uploadLength"]],
      }),
    });
    const j = await res.json();
    const n = Number(j?.result?.[0]?.uploadLength);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** aria2c's options common to the seed and the leechers: the tracker is the only way to meet. */
function ariaCommon(port: number, ctx: Ctx): string[] {
  const cap = Number.isInteger(ctx.rateMiB)
    ? `${ctx.rateMiB}M`
    : `${Math.round(ctx.rateMiB * 1024)}K`; // aria2: K = 1024, M = 1024 K
  return [
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--file-allocation=none",
    "--check-integrity=true",
    "--seed-ratio=0.0",
    `--max-overall-upload-limit=${cap}`,
    `--listen-port=${port}`,
    "--summary-interval=0",
    "--console-log-level=warn",
    "--auto-save-interval=0",
  ];
}

async function ariaRow(ctx: Ctx): Promise<LanRow> {
  const what = `aria2c BitTorrent + opentracker (HTTP announce), ${ctx.n} leechers`;
  const { procs, log, n } = ctx;
  const missing = [];
  for (const tool of ["aria2c", "mktorrent", "opentracker", "curl"]) {
    if ((await run("sh", ["-c", `command -v ${tool}`])).code !== 0) missing.push(tool);
  }
  if (missing.length > 0) {
    return failedRow(what, "not available", `not installed: ${missing.join(", ")}`);
  }
  const base = `${ctx.dir}/aria`;
  const otDir = `${ctx.dir}/opentracker`;
  await Deno.mkdir(base);
  await Deno.mkdir(otDir, { mode: 0o755 });
  await Deno.chmod(otDir, 0o755); // opentracker chroots here as nobody
  const mine: Proc[] = [];
  try {
    const [tracker, seedPort, rpcPort, ...leechPorts] = freePorts(3 + n);
    const torrent = `${base}/f.torrent`;
    const mk = await run("mktorrent", [
      "-p",
      "-l",
      "20",
      "-a",
      `http://127.0.0.1:${tracker}/announce`,
      "-o",
      torrent,
      `${ctx.src}/${FILE}`,
    ]);
    if (mk.code !== 0) return failedRow(what, "failed", `mktorrent: ${gist(mk.text)}`);
    const show = await run("aria2c", ["-S", torrent]);
    const infoHash = /Info Hash: ([0-9a-f]{40})/i.exec(show.text)?.[1]?.toLowerCase();
    if (!infoHash) return failedRow(what, "failed", `aria2c -S: no info hash: ${gist(show.text)}`);
    await Deno.writeTextFile(`${otDir}/whitelist`, `${infoHash}\n`, { mode: 0o644 });

    const ot = procs.spawn("opentracker", "opentracker", [
      "-i",
      "127.0.0.1",
      "-p",
      String(tracker),
      "-P",
      String(tracker),
      "-d",
      otDir,
      "-w",
      "/whitelist", // read after the chroot
    ]);
    mine.push(ot);
    const otUp = await until(
      async () => !ot.running || (await scrapeComplete(tracker, infoHash)) !== undefined,
      10_000,
      100,
    );
    if (!ot.running || !otUp) {
      return failedRow(what, "failed", `opentracker did not start: ${ot.why()}`);
    }

    const t0Seed = performance.now();
    const seed = procs.spawn("aria2c seed", "aria2c", [
      ...ariaCommon(seedPort, ctx),
      "--enable-rpc=true",
      `--rpc-listen-port=${rpcPort}`,
      "--rpc-listen-all=false",
      "-d",
      ctx.src,
      torrent,
    ]);
    mine.push(seed);
    const seeded = await until(
      async () => !seed.running || ((await scrapeComplete(tracker, infoHash)) ?? 0) >= 1,
      60_000 + ctx.size / (20 * MiB) * 1000,
      100,
    );
    if (!seed.running || !seeded) {
      return failedRow(what, "failed", `the aria2c seed never announced: ${seed.why()}`);
    }
    log(
      `F aria2c: opentracker on :${tracker}, seed announced after ${
        s1((performance.now() - t0Seed) / 1000)
      } (hash check)`,
    );

    const stamps = `${base}/done.txt`;
    await Deno.writeTextFile(stamps, "");
    const outs: string[] = [];
    const args: string[][] = [];
    for (let i = 0; i < n; i++) {
      const d = `${base}/leech-${i}`;
      await Deno.mkdir(d);
      const hook = `${base}/done-${i}.sh`;
      await Deno.writeTextFile(hook, `#!/bin/sh\necho "$(date +%s.%N) ${i}" >> ${stamps}\n`, {
        mode: 0o755,
      });
      await Deno.chmod(hook, 0o755);
      outs.push(`${d}/${FILE}`);
      args.push([
        ...ariaCommon(leechPorts[i], ctx),
        "--seed-time=60", // minutes: every leecher seeds until it is stopped
        `--on-bt-download-complete=${hook}`,
        "-d",
        d,
        torrent,
      ]);
    }
    const t0 = Date.now() / 1000;
    const leechers = args.map((a, i) => procs.spawn(`aria2c leecher ${i}`, "aria2c", a));
    mine.push(...leechers);
    const done = new Map<number, number>();
    const read = async () => {
      const text = await Deno.readTextFile(stamps).catch(() => "");
      for (const line of text.split("\n")) {
        const [t, id] = line.trim().split(" ").map(Number);
        if (Number.isFinite(t) && Number.isInteger(id) && !done.has(id)) {
          done.set(id, t - t0);
          log(`F aria2c leecher ${id} done at ${s1(t - t0)}`);
        }
      }
      return done.size === n;
    };
    const all = await until(
      async () => (await read()) || leechers.some((l) => !l.running),
      ctx.timeoutS * 1000,
      100,
    );
    const uploaded = await ariaUploaded(rpcPort);
    const times = [...done.values()];
    const quit = leechers.find((l) => !l.running);
    await procs.stop(mine);
    mine.length = 0;
    if (quit && done.size < n) {
      return failedRow(what, `failed: ${partial(times, n)}`, `${quit.name}: ${quit.why()}`);
    }
    if (!all) return failedRow(what, `timed out after ${ctx.timeoutS} s`, partial(times, n));
    const sha = await checkOutputs(outs, ctx.digest);
    const seedNote = uploaded === undefined
      ? "seed upload not known (aria2c RPC did not answer)"
      : `seed upload ${(uploaded / ctx.size).toFixed(2)} F (aria2c RPC uploadLength)`;
    return timesRow(what, ctx, times, [seedNote, shaNote(sha, n)]);
  } finally {
    await procs.stop(mine);
    await Deno.remove(base, { recursive: true }).catch(() => {});
    await Deno.remove(otDir, { recursive: true }).catch(() => {});
  }
}

// ---------------------------------------------------------------- udpget

/** One line of `udpget serve --log-format json`. */
interface ServeEvent {
  ts: string;
  event: string;
  fields?: Record<string, unknown>;
}

/** A running `udpget serve` and what its log said so far. */
interface Serve {
  proc: Proc;
  port: number;
  events: ServeEvent[];
}

function udpget(ctx: Ctx, args: string[]): [string, string[], { cwd: string }] {
  return [Deno.execPath(), [...BENCH_RUN_FLAGS, ctx.main, ...args], { cwd: dirname(ctx.main) }];
}

/** `udpget serve` of the source, capped, once it listens and has hashed the file. */
async function startServe(ctx: Ctx, mine: Proc[]): Promise<Serve> {
  const events: ServeEvent[] = [];
  const [cmd, args, opts] = udpget(ctx, [
    "serve",
    "0",
    "--host",
    "127.0.0.1",
    "--root",
    ctx.src,
    "--no-cache",
    "--rate",
    String(ctx.rate),
    "--log-format",
    "json",
  ]);
  const proc = ctx.procs.spawn("udpget serve", cmd, args, {
    ...opts,
    onLine: (line) => {
      try {
        const e = JSON.parse(line);
        if (e && typeof e.event === "string") events.push(e);
      } catch { /* not a log line */ }
    },
  });
  mine.push(proc);
  const ready = await until(
    () => !proc.running || events.some((e) => e.event === "prehash_done"),
    60_000 + ctx.size / (20 * MiB) * 1000,
  );
  const port = Number(events.find((e) => e.event === "listening")?.fields?.port);
  if (!ready || !proc.running || !Number.isInteger(port)) {
    throw new Error(`udpget serve did not start: ${proc.why()}`);
  }
  return { proc, port, events };
}

/**
 * Stops `serve` and returns the bytes it sent in all (its `stopped` line) and, of them, those of
 * transfers that started at or after `splitMs` (epoch ms), by its transfer log.
 */
async function serveBytes(
  ctx: Ctx,
  s: Serve,
  splitMs = Infinity,
): Promise<{ total?: number; after: number }> {
  await ctx.procs.stop([s.proc]);
  const total = Number(s.events.find((e) => e.event === "stopped")?.fields?.bytes_sent);
  const startMs = new Map<unknown, number>();
  let after = 0;
  for (const e of s.events) {
    const id = e.fields?.transfer;
    if (e.event === "transfer_start") startMs.set(id, Date.parse(e.ts));
    if (e.event === "transfer_end" && (startMs.get(id) ?? -Infinity) >= splitMs) {
      after += Number(e.fields?.bytes) || 0;
    }
  }
  return { total: Number.isFinite(total) ? total : undefined, after };
}

/**
 * Bytes a `udpget fetch --json` report says came from servers (the servers file) and from peers
 * (its `swarm` part); both undefined when the report has none (no swarm).
 */
export function sourceBytes(report: unknown): { server?: number; peers?: number } {
  const r = (report ?? {}) as { swarm?: { fromServers?: number; fromPeers?: number } | null };
  // the fetch report's `swarm` part (README, `--json`): bytes of the file by kind of source
  if (!r.swarm) return {};
  return { server: r.swarm.fromServers, peers: r.swarm.fromPeers };
}

/** The `--json` report on a fetch's stdout (its last JSON line), or undefined. */
function report(p: Proc): unknown {
  for (const line of p.out.trim().split("\n").reverse()) {
    try {
      return JSON.parse(line);
    } catch { /* progress or nothing */ }
  }
  return undefined;
}

/** `udpget fetch` of FILE from the servers file into `out`, with `extra` options. */
function startFetch(ctx: Ctx, name: string, list: string, out: string, extra: string[]): Proc {
  const [cmd, args, opts] = udpget(ctx, [
    "fetch",
    list,
    CONNECTIONS,
    FILE,
    "-o",
    out,
    "--force",
    "--json",
    ...extra,
  ]);
  return ctx.procs.spawn(name, cmd, args, opts);
}

/** OUT is whole: renamed from OUT.part (udpget writes through it), full size. */
async function complete(out: string, size: number): Promise<boolean> {
  try {
    if ((await Deno.stat(out)).size !== size) return false;
  } catch {
    return false;
  }
  try {
    await Deno.stat(`${out}.part`);
    return false;
  } catch {
    return true;
  }
}

/**
 * Waits until every fetch of `fs` is done: exited 0, or (with `byFile`) its output complete.
 * Done times are seconds after `t0` (performance.now()); stops at the first failed fetch.
 */
async function waitFetches(
  fs: Proc[],
  outs: string[],
  t0: number,
  size: number,
  timeoutS: number,
  byFile: boolean,
  log: (msg: string) => void,
): Promise<{ done: Map<number, number>; failed?: Proc; timedOut: boolean }> {
  const done = new Map<number, number>();
  let failed: Proc | undefined;
  const check = async () => {
    for (const [i, f] of fs.entries()) {
      if (done.has(i)) continue;
      if (f.exit && f.exit.code !== 0) {
        failed = f;
        return true;
      }
      const at = f.exit
        ? f.exit.at
        : byFile && await complete(outs[i], size)
        ? performance.now()
        : undefined;
      if (at === undefined) continue;
      done.set(i, (at - t0) / 1000);
      log(`F ${f.name} done at ${s1((at - t0) / 1000)}`);
    }
    return done.size === fs.length;
  };
  const all = await until(check, timeoutS * 1000);
  return { done, failed, timedOut: !all };
}

async function clientServerRow(ctx: Ctx): Promise<LanRow> {
  const what = `udpget client/server: 1 serve --rate, ${ctx.n} fetch`;
  const bound = ctx.n * ctx.size / ctx.rate;
  const timeoutS = Number(Deno.env.get("BENCH_SWARM_TIMEOUT_S") ?? 2 * bound + 60);
  const mine: Proc[] = [];
  const base = `${ctx.dir}/cs`;
  await Deno.mkdir(base);
  try {
    const serve = await startServe(ctx, mine);
    const list = `${base}/servers.txt`;
    await Deno.writeTextFile(list, `127.0.0.1 ${serve.port}\n`);
    const outs = Array.from({ length: ctx.n }, (_, i) => `${base}/out-${i}.bin`);
    const t0 = performance.now();
    const fs = outs.map((o, i) => startFetch(ctx, `udpget fetch ${i}`, list, o, []));
    mine.push(...fs);
    const w = await waitFetches(fs, outs, t0, ctx.size, timeoutS, false, ctx.log);
    const times = [...w.done.values()];
    const sent = await serveBytes(ctx, serve);
    await ctx.procs.stop(mine);
    if (w.failed) {
      return failedRow(
        what,
        `failed: ${partial(times, ctx.n)}`,
        `${w.failed.name}: ${w.failed.why()}`,
      );
    }
    if (w.timedOut) return failedRow(what, `timed out after ${timeoutS} s`, partial(times, ctx.n));
    const sha = await checkOutputs(outs, ctx.digest);
    const up = sent.total === undefined
      ? "server upload not logged"
      : `server upload ${(sent.total / ctx.size).toFixed(2)} F`;
    return timesRow(what, ctx, times, [`bound N·F/u_s ${s1(bound)}`, up, shaNote(sha, ctx.n)]);
  } catch (e) {
    return failedRow(what, "failed", e instanceof Error ? e.message : String(e));
  } finally {
    await ctx.procs.stop(mine);
    await Deno.remove(base, { recursive: true }).catch(() => {});
  }
}

/** Percent of the bytes a set of fetches got from peers, by their reports; "" if unknown. */
function peerShare(reports: unknown[]): string {
  let server = 0;
  let peers = 0;
  for (const r of reports) {
    const b = sourceBytes(r);
    if (b.peers === undefined) return "";
    server += b.server ?? 0;
    peers += b.peers;
  }
  return server + peers > 0 ? `${(100 * peers / (server + peers)).toFixed(0)} % from peers` : "";
}

async function swarmRows(ctx: Ctx): Promise<LanRow[]> {
  const what = `udpget swarm: serve --rate + udpget tracker, ${ctx.n} fetch --share-rate`;
  const lateWhat = "udpget swarm: late joiner, started when all are done";
  const mine: Proc[] = [];
  const base = `${ctx.dir}/swarm`;
  await Deno.mkdir(base);
  const rate = String(ctx.rate);
  try {
    const [tcmd, targs, topts] = udpget(ctx, [
      "tracker",
      "0",
      "--host",
      "127.0.0.1",
      "--peers-per-address", // (every fetcher here announces from 127.0.0.1)
      "0",
    ]);
    const tracker = ctx.procs.spawn("udpget tracker", tcmd, targs, topts);
    mine.push(tracker);
    let trackerPort = 0;
    await until(() => {
      trackerPort = Number(/listening on udp [^ ]*:(\d+) /.exec(tracker.out)?.[1] ?? 0);
      return trackerPort > 0 || !tracker.running;
    }, 30_000);
    if (trackerPort === 0) {
      return [failedRow(what, `not available: udpget tracker: ${tracker.why()}`)];
    }
    const serve = await startServe(ctx, mine);
    const list = `${base}/servers.txt`;
    await Deno.writeTextFile(list, `127.0.0.1 ${serve.port}\n`);
    const swarm = [
      "--tracker",
      `127.0.0.1:${trackerPort}`,
      "--share-rate",
      rate,
      "--seed-time",
      String(SEED_TIME_S),
    ];
    ctx.log(`F udpget swarm: tracker on :${trackerPort}, serve on :${serve.port}`);
    const outs = Array.from({ length: ctx.n }, (_, i) => `${base}/out-${i}.bin`);
    const t0 = performance.now();
    const fs = outs.map((o, i) => startFetch(ctx, `udpget swarm fetch ${i}`, list, o, swarm));
    mine.push(...fs);
    const w = await waitFetches(fs, outs, t0, ctx.size, ctx.timeoutS, true, ctx.log);
    const times = [...w.done.values()];
    if (w.failed?.exit?.code === 2) {
      return [failedRow(what, `not available: ${w.failed.errLine()}`)];
    }
    if (w.failed) {
      return [
        failedRow(what, `failed: ${partial(times, ctx.n)}`, `${w.failed.name}: ${w.failed.why()}`),
      ];
    }
    if (w.timedOut) {
      return [failedRow(what, `timed out after ${ctx.timeoutS} s`, partial(times, ctx.n))];
    }

    // the late joiner: the fetchers still running are still seeding
    const k = fs.filter((f) => f.running).length;
    const lateOut = `${base}/out-late.bin`;
    const lateStartMs = Date.now();
    const t1 = performance.now();
    const late = startFetch(ctx, "udpget swarm late joiner", list, lateOut, swarm);
    mine.push(late);
    const lw = await waitFetches([late], [lateOut], t1, ctx.size, ctx.timeoutS, true, ctx.log);
    // every fetch ends by itself after its seed time, with its report
    await withTimeout(Promise.all([...fs, late].map((f) => f.exited)), (SEED_TIME_S + 30) * 1000);
    const broke = [...fs, late].filter((f) => f.exit && f.exit.code !== 0);
    for (const f of broke) ctx.log(`F ${f.name} failed after it was done: ${f.why()}`);
    const sent = await serveBytes(ctx, serve, lateStartMs);
    await ctx.procs.stop(mine);

    const sha = await checkOutputs(outs, ctx.digest);
    const up = sent.total === undefined
      ? "server upload not logged"
      : `server upload ${((sent.total - sent.after) / ctx.size).toFixed(2)} F`;
    const reports = fs.map(report);
    const share = peerShare(reports);
    if (!share) {
      const keys = Object.keys((reports.find((r) => r) ?? {}) as object).join(", ");
      ctx.log(`F udpget swarm: the --json reports tell no bytes from peers (keys: ${keys})`);
    }
    const notes = [up, ...(share ? [share] : []), shaNote(sha, ctx.n)];
    const brokeN = broke.filter((f) => f !== late).length;
    if (brokeN > 0) notes.push(`${brokeN} fetch(es) failed while seeding`);
    const rows = [timesRow(what, ctx, times, notes)];

    const ideal = ctx.size / (ctx.rate * (1 + k));
    const idealNote = `ideal F/(u_s + k·u_i) ${ideal.toFixed(2)} s, k = ${k} fetchers seeding`;
    if (lw.failed || lw.timedOut) {
      const v = lw.failed ? `failed: ${lw.failed.why()}` : `timed out after ${ctx.timeoutS} s`;
      rows.push(failedRow(lateWhat, v, idealNote));
    } else {
      const s = lw.done.get(0)!;
      const lateSha = await checkOutputs([lateOut], ctx.digest);
      const lateShare = peerShare([report(late)]);
      rows.push({
        scenario: "",
        what: lateWhat,
        value: `${s.toFixed(2)} s (${(ctx.size / MiB / s).toFixed(1)} MiB/s)`,
        note: [
          idealNote,
          `server sent it ${(sent.after / ctx.size).toFixed(2)} F`,
          ...(lateShare ? [lateShare] : []),
          lateSha.bad.length === 0 ? "SHA-256 ok" : "SHA-256 WRONG",
        ].join("; "),
      });
    }
    return rows;
  } catch (e) {
    return [failedRow(what, "failed", e instanceof Error ? e.message : String(e))];
  } finally {
    await ctx.procs.stop(mine);
    await Deno.remove(base, { recursive: true }).catch(() => {});
  }
}

// ---------------------------------------------------------------- the scenario

function setting(name: string, fallback: number): number {
  const v = Number(Deno.env.get(name) ?? fallback);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`bad ${name}: must be a positive number`);
  return v;
}

/**
 * Runs scenario F and returns its rows for bench.ts's table: aria2c BitTorrent with
 * opentracker, udpget client/server (unless `BENCH_SWARM_CS=0`) and the udpget swarm with its
 * late joiner, one run each. Every process it starts is stopped and its temp dir removed before
 * it returns or throws, and on SIGINT/SIGTERM.
 */
export async function runSwarmBench(opts: SwarmBenchOptions): Promise<LanRow[]> {
  const mib = setting("BENCH_SWARM_MIB", 128);
  const n = Math.round(setting("BENCH_SWARM_N", 8));
  const rateMiB = setting("BENCH_SWARM_RATE_MIB", 8);
  const withCs = Deno.env.get("BENCH_SWARM_CS") !== "0";
  const size = Math.round(mib * MiB);
  const rate = Math.round(rateMiB * MiB);
  const tStar = Math.max(size / rate, n * size / (rate + n * rate));
  const timeoutS = Number(Deno.env.get("BENCH_SWARM_TIMEOUT_S") ?? Math.max(120, 8 * tStar));
  const procs = new Procs();
  const dir = await Deno.makeTempDir({ prefix: "udpget_swarm_bench_" });
  await Deno.chmod(dir, 0o755); // opentracker (nobody) reaches its chroot through here
  const onSignal = () => {
    procs.killAll();
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone */ }
    Deno.exit(130);
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    const src = `${dir}/src`;
    await Deno.mkdir(src, { mode: 0o755 });
    // random bytes: nothing on the way can compress or deduplicate them
    const f = await Deno.open(`${src}/${FILE}`, { write: true, create: true, mode: 0o644 });
    const chunk = new Uint8Array(MiB);
    for (let left = size; left > 0; left -= MiB) {
      for (let k = 0; k < MiB; k += 65536) crypto.getRandomValues(chunk.subarray(k, k + 65536));
      await f.write(chunk.subarray(0, Math.min(MiB, left)));
    }
    f.close();
    const digest = (await sha256sum(`${src}/${FILE}`))!;
    const ctx: Ctx = {
      main: opts.main,
      log: opts.log,
      procs,
      dir,
      src,
      digest,
      size,
      n,
      rate,
      rateMiB,
      tStar,
      timeoutS,
    };
    opts.log(
      `F swarm: ${mib} MiB to ${n} fetchers, every upload ≤ ${rateMiB} MiB/s; ` +
        `lower bound T* = max(F/u_s, N·F/(u_s + N·u_i)) = ${s1(tStar)}`,
    );
    const label = `F swarm, ${mib} MiB to ${n}, uploads ≤ ${rateMiB} MiB/s, T* ${s1(tStar)}`;
    const rows: LanRow[] = [];
    const add = (r: LanRow) => {
      opts.log(`F ${r.what}: ${r.value}${r.note ? ` — ${r.note}` : ""}`);
      rows.push(r);
    };
    add(await ariaRow(ctx));
    const bound = n * size / rate;
    if (withCs) add(await clientServerRow(ctx));
    else {
      add(failedRow(
        `udpget client/server: 1 serve --rate, ${n} fetch`,
        "skipped (BENCH_SWARM_CS=0)",
        `would take ≥ N·F/u_s = ${s1(bound)}`,
      ));
    }
    for (const r of await swarmRows(ctx)) add(r);
    rows[0].scenario = label;
    return rows;
  } finally {
    await procs.stop();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
