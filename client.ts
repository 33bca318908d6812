/**
 * `udpget fetch`: asks every server about the file, keeps those that agree, pulls pieces from
 * all of them over `<connections>` workers, verifies every piece and the whole file, and only
 * then renames `OUT.part` to `OUT`.
 *
 * Decisions (what to ask whom, when a server is dead, which metadata wins) are made by the
 * pure cores in `lib/`; this file moves bytes between them, the sockets and the files.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { basename } from "node:path";
import { createHash } from "node:crypto";
import { type FetchArgs, parseFetchArgs } from "./lib/cli_args.ts";
import { chooseMeta, type FileMeta, type MetaAnswer, toHex } from "./lib/consensus.ts";
import { ClientEndpoint, type ServerAddr } from "./lib/endpoint.ts";
import { ExitCode, UdpgetError } from "./lib/exit.ts";
import { formatBytes, formatDuration, formatProgress, formatRate } from "./lib/format.ts";
import { sha256 } from "./lib/file_digest.ts";
import { Notifier } from "./lib/notifier.ts";
import { encode, ErrorCode, errorCodeName, fileIdOf, NO_TOKEN, type Packet } from "./lib/packet.ts";
import { type Assignment, PieceScheduler } from "./lib/scheduler.ts";
import { ServerHealth } from "./lib/server_health.ts";
import { formatServer, parseServerList } from "./lib/servers.ts";
import { sleep, withTimeout } from "./lib/timer.ts";

/**
 * Bytes per chunk request. One request makes the server send a burst of datagrams; with one
 * request in flight per server on each worker socket, 3 servers × 48 KiB stays under the
 * default 208 KiB socket receive buffer, so bursts are not dropped by the kernel.
 */
export const REQUEST_BYTES = 48 << 10;

/** Upper bound on blocks per request, whatever the block size. */
export const REQUEST_MAX_BLOCKS = 32;

/** Metadata attempts per server before it counts as unreachable (timeouts double). */
const META_ATTEMPTS = 4;
const META_FIRST_TIMEOUT_MS = 250;
/** How long a BUSY server (hashing a big file) may keep us waiting for its metadata. */
const META_BUSY_LIMIT_MS = 120_000;

/** `udpget fetch ...`: resolves with the exit status. */
export async function runFetch(args: string[]): Promise<number> {
  const a = parseFetchArgs(args);
  const servers = await loadServers(a.serversFile);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const endpoint = new ClientEndpoint(servers, a.connections);
  try {
    const { name, meta, chosen } = await chooseFile(endpoint, servers, a, stop.signal);
    const out = a.output ?? basename(name);
    await checkOutput(out, a.force);
    const result = await download(endpoint, servers, chosen, name, meta, out, a, stop.signal);
    console.error(result);
    return ExitCode.Ok;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await endpoint.shutdown();
  }
}

/** Reads, parses and resolves the servers file; unresolvable names are warned about. */
export async function loadServers(path: string): Promise<ServerAddr[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UdpgetError(ExitCode.Usage, `cannot read servers file ${path}: ${brief(e)}`);
  }
  const list = parseServerList(text);
  if (list.errors.length > 0) {
    for (const err of list.errors.slice(1)) {
      console.error(`udpget: ${path}:${err.line}: ${err.message}`);
    }
    const first = list.errors[0];
    throw new UdpgetError(ExitCode.Usage, `${path}:${first.line}: ${first.message}`);
  }
  if (list.servers.length === 0) {
    throw new UdpgetError(ExitCode.Usage, `${path}: no servers listed`);
  }
  const resolved = await Promise.all(
    list.servers.map(async (s): Promise<ServerAddr | undefined> => {
      const label = formatServer(s.host, s.port);
      try {
        const { address, family } = await lookup(s.host);
        return { label, hostname: address, port: s.port, family: family === 6 ? "ipv6" : "ipv4" };
      } catch (e) {
        console.error(`udpget: ${path}:${s.line}: cannot resolve ${s.host}: ${brief(e)}`);
        return undefined;
      }
    }),
  );
  const ok = resolved.filter((s): s is ServerAddr => s !== undefined);
  if (ok.length === 0) {
    throw new UdpgetError(ExitCode.Unreachable, "no server address could be resolved");
  }
  return ok;
}

/** The file chosen, its agreed metadata, and the indices of the servers that agree on it. */
interface Chosen {
  name: string;
  meta: FileMeta;
  chosen: number[];
}

/** Asks about `a.file`, or prompts on a terminal until some server has the named file. */
async function chooseFile(
  endpoint: ClientEndpoint,
  servers: ServerAddr[],
  a: FetchArgs,
  signal: AbortSignal,
): Promise<Chosen> {
  if (a.file !== undefined) return await discover(endpoint, servers, a.file, signal);
  if (!Deno.stdin.isTerminal()) {
    throw new UdpgetError(ExitCode.Usage, "missing <file> (and stdin is not a terminal to ask)");
  }
  for (;;) {
    const name = prompt("File to fetch:")?.trim();
    if (name === undefined) throw new UdpgetError(ExitCode.Usage, "no file name given");
    if (name === "") continue;
    try {
      return await discover(endpoint, servers, name, signal);
    } catch (e) {
      if (!(e instanceof UdpgetError) || e.exitCode !== ExitCode.NotFound) throw e;
      console.error(`udpget: ${e.message}; try another name (Ctrl-D to give up)`);
    }
  }
}

/** META_REQUEST to every server at once; picks the metadata the majority agrees on. */
async function discover(
  endpoint: ClientEndpoint,
  servers: ServerAddr[],
  name: string,
  signal: AbortSignal,
): Promise<Chosen> {
  const answers = await Promise.all(
    servers.map((_, i) => askMeta(endpoint, i, name, signal)),
  );
  abortCheck(signal);
  answers.forEach((ans, i) => {
    if (ans.kind === "error") {
      console.error(`udpget: ${servers[i].label}: ${errorCodeName(ans.code)}: ${ans.message}`);
    } else if (ans.kind === "silent") console.error(`udpget: ${servers[i].label}: no answer`);
  });
  const c = chooseMeta(answers);
  if (!c.ok) {
    if (c.reason === "silent") throw new UdpgetError(ExitCode.Unreachable, "no server answered");
    throw new UdpgetError(ExitCode.NotFound, `"${name}" is not available from any server`);
  }
  for (const i of c.disagreeing) {
    const m = (answers[i] as { meta: FileMeta }).meta;
    console.error(
      `udpget: ${servers[i].label}: left out, it has another version ` +
        `(${m.size} bytes, sha256 ${toHex(m.digest).slice(0, 16)}…)`,
    );
  }
  return { name, meta: c.meta, chosen: c.servers };
}

async function askMeta(
  endpoint: ClientEndpoint,
  server: number,
  name: string,
  signal: AbortSignal,
): Promise<MetaAnswer> {
  const busyUntil = Date.now() + META_BUSY_LIMIT_MS;
  let token = NO_TOKEN;
  for (let attempt = 0; attempt < META_ATTEMPTS && !signal.aborted;) {
    const reply = await request(
      endpoint,
      0,
      server,
      (requestId) => encode({ type: "meta_request", requestId, token, name }),
      META_FIRST_TIMEOUT_MS << attempt,
    );
    if (reply === undefined) {
      attempt++;
    } else if (reply.type === "retry") {
      token = reply.token.slice();
    } else if (reply.type === "error" && reply.code === ErrorCode.Busy && Date.now() < busyUntil) {
      await sleep(200, signal);
    } else if (reply.type === "error") {
      return { kind: "error", code: reply.code, message: reply.message };
    } else if (reply.type === "meta_reply") {
      const { size, pieceSize, maxBlock, digest, piecesRoot, mtimeMs } = reply;
      return {
        kind: "meta",
        meta: {
          size,
          pieceSize,
          maxBlock,
          mtimeMs,
          digest: digest.slice(),
          piecesRoot: piecesRoot.slice(),
        },
      };
    }
  }
  return { kind: "silent" };
}

/** Sends one request and waits for its first reply, or `undefined` after `timeoutMs`. */
async function request(
  endpoint: ClientEndpoint,
  worker: number,
  server: number,
  build: (requestId: number) => Uint8Array,
  timeoutMs: number,
): Promise<Packet | undefined> {
  let settle!: (p: Packet) => void;
  const reply = new Promise<Packet>((r) => settle = r);
  const id = endpoint.open(server, (p) => settle(p));
  try {
    await endpoint.send(worker, server, build(id));
    return await withTimeout(reply, timeoutMs);
  } finally {
    endpoint.close(id);
  }
}

async function checkOutput(out: string, force: boolean): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(out);
  } catch {
    return; // does not exist: fine
  }
  if (info.isDirectory) throw new UdpgetError(ExitCode.LocalIo, `${out} is a directory`);
  if (!force) {
    throw new UdpgetError(ExitCode.OutputExists, `${out} exists; use --force to overwrite it`);
  }
}

function abortCheck(signal: AbortSignal): void {
  if (signal.aborted) throw new UdpgetError(ExitCode.Interrupted, "interrupted");
}

function brief(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

// ---------------------------------------------------------------------------------------
// The transfer

interface ServerRun {
  addr: ServerAddr;
  index: number;
  health: ServerHealth;
  bytes: number;
  token: Uint8Array;
}

/** State shared by all lanes of one download. */
class Download {
  readonly sched: PieceScheduler;
  readonly changed = new Notifier();
  readonly runs: ServerRun[];
  readonly fileId: bigint;
  /** Blocks per chunk request for this block size. */
  readonly requestBlocks: number;
  pieceHashes: Uint8Array | undefined;
  received = 0;
  retransmitted = 0;
  badPieces = 0;
  finished = false;

  constructor(
    readonly endpoint: ClientEndpoint,
    readonly part: Deno.FsFile,
    readonly name: string,
    readonly meta: FileMeta,
    readonly blockSize: number,
    runs: ServerRun[],
  ) {
    this.sched = new PieceScheduler({ size: meta.size, pieceSize: meta.pieceSize, blockSize });
    this.runs = runs;
    this.fileId = fileIdOf(meta.digest);
    this.requestBlocks = Math.max(
      1,
      Math.min(REQUEST_MAX_BLOCKS, Math.floor(REQUEST_BYTES / blockSize)),
    );
  }

  get alive(): number {
    return this.runs.filter((r) => r.health.alive).length;
  }

  finish(): void {
    this.finished = true;
    this.changed.notify();
  }
}

async function download(
  endpoint: ClientEndpoint,
  servers: ServerAddr[],
  chosen: number[],
  name: string,
  meta: FileMeta,
  out: string,
  a: FetchArgs,
  signal: AbortSignal,
): Promise<string> {
  const partPath = `${out}.part`;
  let part: Deno.FsFile;
  try {
    part = await Deno.open(partPath, { read: true, write: true, create: true, truncate: true });
    await part.truncate(meta.size);
  } catch (e) {
    throw new UdpgetError(ExitCode.LocalIo, `cannot write ${partPath}: ${brief(e)}`);
  }
  const now = Date.now();
  const runs = chosen.map((index) => ({
    addr: servers[index],
    index,
    health: new ServerHealth(now),
    bytes: 0,
    token: NO_TOKEN,
  }));
  const blockSize = Math.min(a.blockSize, meta.maxBlock);
  const d = new Download(endpoint, part, name, meta, blockSize, runs);
  const started = performance.now();
  const progress = a.quiet || !Deno.stderr.isTerminal() ? undefined : startProgress(d, started);
  let ok = false;
  try {
    signal.addEventListener("abort", () => d.finish(), { once: true });
    d.pieceHashes = await fetchPieceHashes(d, signal);
    const lanes: Promise<void>[] = [];
    for (let w = 0; w < endpoint.workers; w++) {
      for (const run of runs) lanes.push(lane(d, w, run));
    }
    await Promise.all(lanes);
    progress?.stop();
    abortCheck(signal);
    if (!d.sched.done) {
      const why = runs.map((r) => `${r.addr.label}: ${r.health.dropReason ?? "?"}`).join("; ");
      throw new UdpgetError(ExitCode.Unreachable, `every server failed (${why})`);
    }
    await verifyWhole(part, meta);
    part.close();
    await checkOutput(out, a.force);
    await Deno.rename(partPath, out).catch((e) => {
      throw new UdpgetError(ExitCode.LocalIo, `cannot rename ${partPath} to ${out}: ${brief(e)}`);
    });
    ok = true;
    return summary(d, out, performance.now() - started);
  } finally {
    progress?.stop();
    if (!ok) {
      try {
        part.close();
      } catch { /* already closed */ }
      await Deno.remove(partPath).catch(() => {});
    }
  }
}

/** One (worker, server) lane: keeps one request in flight to its server until done. */
async function lane(d: Download, worker: number, run: ServerRun): Promise<void> {
  while (!d.finished && run.health.alive) {
    if (d.sched.done) return d.finish();
    const a = d.sched.next(run.index, d.requestBlocks);
    if (!a) {
      await withTimeout(d.changed.wait(), 500);
      continue;
    }
    await fetchRun(d, worker, run, a);
    d.changed.notify();
  }
  if (d.runs.every((r) => !r.health.alive)) d.finish();
}

type RunOutcome = "complete" | { error: number; message: string } | undefined;

/** Sends one chunk request and takes its blocks until all arrived, an error, or the RTO. */
async function fetchRun(d: Download, worker: number, run: ServerRun, a: Assignment): Promise<void> {
  let settle!: (o: RunOutcome) => void;
  const outcome = new Promise<RunOutcome>((r) => settle = r);
  const seen = new Uint8Array(a.blockCount);
  let remaining = a.blockCount;
  const id = d.endpoint.open(run.index, (p) => {
    if (p.type === "error") return settle({ error: p.code, message: p.message });
    if (p.type !== "chunk_reply" || p.fileId !== d.fileId) return;
    const rel = p.offset - a.offset;
    const block = rel / d.blockSize;
    if (rel < 0 || !Number.isInteger(block) || block >= a.blockCount || seen[block]) return;
    run.health.onHeard(Date.now());
    const r = d.sched.onBlock(p.offset, p.data.length);
    if (r.kind === "invalid") return;
    seen[block] = 1;
    if (r.kind === "new") {
      writeAt(d.part, p.data, p.offset);
      run.bytes += p.data.length;
      d.received += p.data.length;
      if (r.pieceComplete) settlePiece(d, a.piece, run);
    }
    if (--remaining === 0) settle("complete");
  });
  const sentAt = Date.now();
  let lost = false;
  if (a.duplicate) d.retransmitted += a.length;
  try {
    const packet = encode({
      type: "chunk_request",
      requestId: id,
      token: run.token,
      fileId: d.fileId,
      offset: a.offset,
      length: a.length,
      blockSize: d.blockSize,
      name: d.name,
    });
    await d.endpoint.send(worker, run.index, packet);
    const o = await withTimeout(outcome, run.health.rtt.rto());
    lost = o === undefined;
    onOutcome(d, run, o, sentAt);
  } finally {
    d.endpoint.close(id);
    d.sched.release(a, lost);
  }
}

function onOutcome(d: Download, run: ServerRun, o: RunOutcome, sentAt: number): void {
  const now = Date.now();
  if (o === "complete") {
    run.health.rtt.addSample(now - sentAt);
  } else if (o === undefined) {
    if (!run.health.onTimeout(sentAt, now)) dropServer(d, run);
  } else if (!run.health.onError(o.error, o.message, now)) {
    dropServer(d, run);
  }
}

function dropServer(d: Download, run: ServerRun): void {
  d.sched.dropServer(run.index);
  console.error(`\rudpget: ${run.addr.label}: dropped (${run.health.dropReason})`);
  d.changed.notify();
  if (d.alive === 0) d.finish();
}

/** Checks a completed piece against its hash; a bad one is fetched again. */
function settlePiece(d: Download, piece: number, run: ServerRun): void {
  let ok = true;
  if (d.pieceHashes) {
    const [start, end] = d.sched.pieceRange(piece);
    const bytes = readAt(d.part, start, end - start);
    const want = d.pieceHashes.subarray(piece * 32, piece * 32 + 32);
    ok = toHex(sha256(bytes)) === toHex(want);
  }
  d.sched.settlePiece(piece, ok);
  if (!ok) {
    d.badPieces++;
    console.error(
      `\rudpget: piece ${piece} from ${run.addr.label} failed its hash; fetching it again`,
    );
  }
  if (d.sched.done) d.finish();
}

/** Gets the piece hash list and checks it against the agreed `piecesRoot`. */
async function fetchPieceHashes(d: Download, signal: AbortSignal): Promise<Uint8Array | undefined> {
  const count = d.sched.pieceCount;
  const hashes = new Uint8Array(count * 32);
  let next = 0;
  let turn = 0;
  let failures = 0;
  while (next < count && !signal.aborted) {
    const alive = d.runs.filter((r) => r.health.alive);
    if (alive.length === 0 || failures > 8 * d.runs.length) return undefined;
    const run = alive[turn++ % alive.length];
    const first = next;
    const reply = await request(d.endpoint, 0, run.index, (requestId) =>
      encode({
        type: "hashes_request",
        requestId,
        token: run.token,
        fileId: d.fileId,
        firstPiece: first,
        count: Math.min(0xffff, count - first),
        name: d.name,
      }), run.health.rtt.rto());
    if (reply?.type !== "hashes_reply" || reply.firstPiece !== first || reply.hashes.length === 0) {
      failures++;
      continue;
    }
    hashes.set(
      reply.hashes.subarray(0, Math.min(reply.hashes.length, (count - first) * 32)),
      first * 32,
    );
    next = first + reply.hashes.length / 32;
  }
  if (next < count) return undefined;
  if (toHex(sha256(hashes)) !== toHex(d.meta.piecesRoot)) {
    console.error(
      "udpget: piece hash list does not match the agreed root; verifying whole file only",
    );
    return undefined;
  }
  return hashes;
}

async function verifyWhole(part: Deno.FsFile, meta: FileMeta): Promise<void> {
  const h = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  await part.seek(0, Deno.SeekMode.Start);
  let total = 0;
  for (;;) {
    const n = await part.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
    total += n;
  }
  const got = new Uint8Array(h.digest());
  if (total !== meta.size || toHex(got) !== toHex(meta.digest)) {
    throw new UdpgetError(
      ExitCode.Verification,
      `verification failed: sha256 ${toHex(got)} != expected ${toHex(meta.digest)}`,
    );
  }
}

function writeAt(file: Deno.FsFile, data: Uint8Array, offset: number): void {
  // Sync seek+write: no other lane can move the position in between.
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < data.length) done += file.writeSync(data.subarray(done));
}

function readAt(file: Deno.FsFile, offset: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  file.seekSync(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < length) {
    const n = file.readSync(buf.subarray(got));
    if (n === null || n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

function startProgress(d: Download, started: number): { stop(): void } {
  const enc = new TextEncoder();
  const draw = () => {
    const line = formatProgress({
      done: d.received,
      total: d.meta.size,
      elapsedMs: performance.now() - started,
      alive: d.alive,
      servers: d.runs.length,
    });
    Deno.stderr.writeSync(enc.encode(`\r\x1b[K${line}`));
  };
  const timer = setInterval(draw, 200);
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      draw();
      Deno.stderr.writeSync(enc.encode("\n"));
    },
  };
}

function summary(d: Download, out: string, ms: number): string {
  const secs = ms / 1000;
  const shares = d.runs.map((r) => {
    const pct = d.meta.size === 0 ? 0 : (100 * r.bytes) / d.meta.size;
    return `${r.addr.label} ${pct.toFixed(0)}%`;
  }).join(", ");
  return `udpget: ${out}: ${formatBytes(d.meta.size)} in ${formatDuration(secs)} ` +
    `(${secs.toFixed(2)} s, ${formatRate(d.meta.size / Math.max(secs, 1e-3))}), ` +
    `sha256 verified; from ${shares}`;
}
