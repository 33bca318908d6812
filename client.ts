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
import { type FetchArgs, parseFetchArgs } from "./lib/cli/cli_args.ts";
import { chooseMeta, type FileMeta, type MetaAnswer, toHex } from "./lib/engine/consensus.ts";
import { ClientEndpoint, detach, type ServerAddr } from "./lib/io/endpoint.ts";
import { ExitCode, UdpgetError } from "./lib/cli/exit.ts";
import { formatBytes, formatProgress, formatRate } from "./lib/cli/format.ts";
import { sha256 } from "./lib/io/file_digest.ts";
import { Notifier } from "./lib/io/notifier.ts";
import { CongestionWindow } from "./lib/engine/congestion.ts";
import { PieceVerifier } from "./lib/io/piece_verifier.ts";
import { keepAfterFailure, PartialDownload } from "./lib/io/partial_download.ts";
import { readKeyFile } from "./lib/wire/auth.ts";
import { RequestWindow } from "./lib/engine/request_window.ts";
import { SourceLedger } from "./lib/engine/blame.ts";
import { TokenBucket } from "./lib/engine/token_bucket.ts";
import { encode, ErrorCode, errorCodeName, fileIdOf, type Packet } from "./lib/wire/packet.ts";
import { type Assignment, PieceScheduler } from "./lib/engine/scheduler.ts";
import { ServerHealth } from "./lib/engine/server_health.ts";
import { formatServer, parseServerList } from "./lib/cli/servers.ts";
import { sleep, withTimeout } from "./lib/io/timer.ts";

/** Metadata attempts per server before it counts as unreachable (timeouts double). */
const META_ATTEMPTS = 4;
const META_FIRST_TIMEOUT_MS = 250;
/** How long a BUSY server (hashing a big file) may keep us waiting for its metadata. */
const META_BUSY_LIMIT_MS = 120_000;

/** `udpget fetch ...`: resolves with the exit status. */
export async function runFetch(args: string[]): Promise<number> {
  const a = parseFetchArgs(args);
  const servers = await loadServers(a.serversFile);
  const key = a.secretFile === undefined ? undefined : await readKeyFile(a.secretFile);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const endpoint = new ClientEndpoint(servers, a.connections, key);
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
  const keyed = a.secretFile !== undefined;
  if (a.file !== undefined) {
    return await discover(endpoint, servers, a.file, signal, a.checksum, keyed);
  }
  if (!Deno.stdin.isTerminal()) {
    throw new UdpgetError(ExitCode.Usage, "missing <file> (and stdin is not a terminal to ask)");
  }
  for (;;) {
    const name = prompt("File to fetch:")?.trim();
    if (name === undefined) throw new UdpgetError(ExitCode.Usage, "no file name given");
    if (name === "") continue;
    try {
      return await discover(endpoint, servers, name, signal, a.checksum, keyed);
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
  trusted?: Uint8Array,
  keyed = false,
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
  const c = chooseMeta(answers, trusted, keyed);
  if (!c.ok) {
    if (c.reason === "auth") {
      const why = keyed
        ? "the key of --secret-file is refused (or the servers do not use one)"
        : "the servers require --secret-file";
      throw new UdpgetError(ExitCode.AuthFailed, `authentication failed: ${why}`);
    }
    if (c.reason === "silent") throw new UdpgetError(ExitCode.Unreachable, "no server answered");
    if (c.reason === "tie") {
      answers.forEach((ans, i) => {
        if (ans.kind === "meta") console.error(`udpget: ${servers[i].label}: ${version(ans.meta)}`);
      });
      throw new UdpgetError(
        ExitCode.Verification,
        `servers disagree on "${name}" and no version has a majority; ` +
          `pass --checksum sha256=HEX to choose the one you trust`,
      );
    }
    if (c.reason === "untrusted") {
      throw new UdpgetError(
        ExitCode.Verification,
        `no server offers "${name}" with sha256 ${toHex(trusted!)}`,
      );
    }
    throw new UdpgetError(ExitCode.NotFound, `"${name}" is not available from any server`);
  }
  for (const i of c.disagreeing) {
    const m = (answers[i] as { meta: FileMeta }).meta;
    console.error(
      `udpget: ${servers[i].label}: left out, it has another version (${version(m)})`,
    );
  }
  return { name, meta: c.meta, chosen: c.servers };
}

function version(m: FileMeta): string {
  return `${m.size} bytes, sha256 ${toHex(m.digest).slice(0, 16)}…`;
}

async function askMeta(
  endpoint: ClientEndpoint,
  server: number,
  name: string,
  signal: AbortSignal,
): Promise<MetaAnswer> {
  const busyUntil = Date.now() + META_BUSY_LIMIT_MS;
  for (let attempt = 0; attempt < META_ATTEMPTS && !signal.aborted;) {
    const reply = await request(
      endpoint,
      0,
      server,
      (requestId) =>
        encode({ type: "meta_request", requestId, token: endpoint.token(server), name }),
      META_FIRST_TIMEOUT_MS << attempt,
    );
    if (reply === undefined || reply.type === "retry") {
      attempt++; // (request() already answered RETRYs; another one means the token is refused)
    } else if (reply.type === "error" && reply.code === ErrorCode.Busy && Date.now() < busyUntil) {
      await sleep(200, signal);
    } else if (reply.type === "error") {
      return { kind: "error", code: reply.code, message: reply.message };
    } else if (reply.type === "meta_reply") {
      const { size, pieceSize, maxBlock, digest, piecesRoot, mtimeMs } = reply;
      return {
        kind: "meta",
        meta: { size, pieceSize, maxBlock, mtimeMs, digest, piecesRoot },
      };
    }
  }
  return { kind: "silent" };
}

/**
 * Sends one request and waits for its first reply, or `undefined` after `timeoutMs`. A RETRY
 * (address validation) is followed up to twice: `build` must read the server's current token.
 */
async function request(
  endpoint: ClientEndpoint,
  worker: number,
  server: number,
  build: (requestId: number) => Uint8Array,
  timeoutMs: number,
): Promise<Packet | undefined> {
  let reply: Packet | undefined;
  for (let i = 0; i < 3 && (i === 0 || reply?.type === "retry"); i++) {
    let settle!: (p: Packet) => void;
    const answer = new Promise<Packet>((r) => settle = r);
    const id = endpoint.open(server, (p) => settle(detach(p)));
    try {
      await endpoint.send(worker, server, build(id));
      reply = await withTimeout(answer, timeoutMs);
    } finally {
      endpoint.close(id);
    }
  }
  return reply;
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

/** A message during the transfer: on a terminal it first clears the progress line. */
function note(line: string): void {
  console.error(Deno.stderr.isTerminal() ? `\r\x1b[K${line}` : line);
}

function abortCheck(signal: AbortSignal): void {
  if (signal.aborted) throw new UdpgetError(ExitCode.Interrupted, "interrupted");
}

function brief(e: unknown): string {
  return e instanceof Error ? e.message.split("\n")[0] : String(e);
}

// ---------------------------------------------------------------------------------------
// The transfer

/** What other lanes of the same server may do to a lane: declare its requests lost. */
interface LaneHandle {
  win: RequestWindow;
  lose(id: number, timeout: boolean): void;
}

interface ServerRun {
  /** The server's lanes, one per worker: a completion on one reveals losses on the others. */
  lanes: LaneHandle[];
  addr: ServerAddr;
  index: number;
  health: ServerHealth;
  /** Set once its drop has been handled (reported, its pieces released). */
  dropped: boolean;
  /** No new requests before this time (ms): it answered BUSY, INTERNAL or TOO_MANY. */
  pausedUntil: number;
  cwnd: CongestionWindow;
  /** Bytes this server delivered first (its share). */
  bytes: number;
  /** Time from its first request to its last delivered block, for its throughput. */
  firstAt: number;
  lastAt: number;
}

/** State shared by all lanes of one download. */
class Download {
  readonly sched: PieceScheduler;
  /** Rare global changes: work released, a server dropped, the transfer finished. */
  readonly changed = new Notifier();
  readonly fileId: bigint;
  readonly requestBlocks: number;
  /** In-flight cap of one lane: what one socket can buffer for one server. */
  readonly laneBytes: number;
  verifier!: PieceVerifier;
  /** Which servers delivered each piece in progress, to blame a corrupt one. */
  readonly sources = new SourceLedger();
  limiter: TokenBucket | undefined;
  /** What the final check established, for the summary line. */
  verified = "";
  received = 0;
  /** Bytes of pieces verified by an earlier run, not fetched again. */
  resumed = 0;
  rerequested = 0;
  finished = false;

  constructor(
    readonly endpoint: ClientEndpoint,
    readonly partial: PartialDownload,
    readonly name: string,
    readonly meta: FileMeta,
    readonly blockSize: number,
    readonly runs: ServerRun[],
  ) {
    this.sched = new PieceScheduler({ size: meta.size, pieceSize: meta.pieceSize, blockSize });
    this.fileId = fileIdOf(meta.digest);
    const laneBlocks = laneDatagrams(blockSize);
    this.laneBytes = laneBlocks * blockSize;
    // two requests per lane: one being answered while the next is already asked for, and a
    // completed later request reveals a lost earlier one without waiting for the timeout
    this.requestBlocks = Math.max(1, Math.floor(laneBlocks / 2));
  }

  get alive(): number {
    return this.runs.filter((r) => r.health.alive).length;
  }

  /** When any server still in the transfer was last heard from. */
  lastHeard(): number {
    let t = -Infinity;
    for (const r of this.runs) if (r.health.alive) t = Math.max(t, r.health.lastHeard);
    return t;
  }

  finish(): void {
    this.finished = true;
    this.changed.notify();
  }
}

/**
 * Datagrams of `blockSize` one socket's default receive buffer (208 KiB) can hold. The kernel
 * charges each datagram roughly twice its size plus ~1.5 KiB of bookkeeping (skb truesize), and
 * admits one more once under the limit; measured on loopback: 2 × 65000 B, 4–5 × 32 KiB,
 * 11 × 8 KiB, ~90 × 1400 B.
 */
export function laneDatagrams(blockSize: number): number {
  const RCVBUF = 212992;
  return Math.max(2, Math.min(64, Math.floor(RCVBUF / (2 * (blockSize + 1536))) + 1));
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
  const started = performance.now();
  const blockSize = a.blockSize === "auto"
    ? await probeBlockSize(endpoint, chosen, name, meta, signal)
    : Math.min(a.blockSize, meta.maxBlock);
  abortCheck(signal);
  // nothing can throw between opening the .part and the try that keeps or discards it
  const partial = await PartialDownload.open(out, name, meta, a.force, (l) => console.error(l));
  const lanesPerServer = endpoint.workers;
  const runs = chosen.map((index): ServerRun => ({
    lanes: [],
    addr: servers[index],
    index,
    health: new ServerHealth(Date.now()),
    dropped: false,
    pausedUntil: 0,
    cwnd: new CongestionWindow({
      blockSize,
      initialBlocks: 10,
      minBlocks: 2,
      maxBytes: lanesPerServer * laneDatagrams(blockSize) * blockSize,
      lossReduction: 0.7,
      lossTolerance: 0.1,
    }),
    bytes: 0,
    firstAt: 0,
    lastAt: 0,
  }));
  const d = new Download(endpoint, partial, name, meta, blockSize, runs);
  if (a.limit) d.limiter = new TokenBucket(a.limit, Math.max(a.limit / 20, blockSize), Date.now());
  const progress = a.quiet || !Deno.stderr.isTerminal() ? undefined : startProgress(d, started);
  let ok = false;
  let kept = false;
  try {
    signal.addEventListener("abort", () => d.finish(), { once: true });
    const hashes = await fetchPieceHashes(d, signal);
    // without piece hashes, only a full pass can vouch for the file
    const whole = a.verify === "full" || !hashes || a.checksum !== undefined;
    d.verifier = new PieceVerifier(partial.partPath, meta.size, meta.pieceSize, hashes, whole);
    d.verified = whole ? "sha256 verified" : `${d.sched.pieceCount} pieces verified (SHA-256)`;
    await recheckClaimed(d, out, hashes !== undefined);
    if (d.sched.done) d.finish();
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
    const digest = await d.verifier.digest();
    if (whole && (!digest || toHex(digest) !== toHex(meta.digest))) {
      throw new UdpgetError(
        ExitCode.Verification,
        `verification failed: sha256 ${digest ? toHex(digest) : "?"} != expected ` +
          toHex(meta.digest),
      );
    }
    await partial.complete();
    await checkOutput(out, a.force);
    await Deno.rename(partial.partPath, out).catch((e) => {
      throw new UdpgetError(
        ExitCode.LocalIo,
        `cannot rename ${partial.partPath} to ${out}: ${brief(e)}`,
      );
    });
    ok = true;
    return summary(d, out, performance.now() - started);
  } catch (e) {
    if (keepAfterFailure(e, d.sched.verifiedPieces)) {
      kept = true;
      await partial.keep();
      note(
        `udpget: kept ${partial.partPath} (${d.sched.verifiedPieces} of ` +
          `${d.sched.pieceCount} pieces verified; state in ${partial.statePath}); ` +
          `run the same command again to resume`,
      );
    }
    throw e;
  } finally {
    progress?.stop();
    d.verifier?.close();
    if (!ok && !kept) await partial.discard();
  }
}

/**
 * Re-checks the pieces an earlier run recorded as verified against their hashes (the `.part`
 * may have been torn by a crash or edited since); those that pass are not fetched again.
 */
async function recheckClaimed(d: Download, out: string, hashes: boolean): Promise<void> {
  const claimed = d.partial.claimed;
  if (claimed.length === 0) return;
  if (!hashes) {
    // claims that cannot be checked piece by piece are not trusted: fetch everything again
    console.error(
      `udpget: ${out}: no piece hashes to re-check the partial download; starting over`,
    );
    return;
  }
  const oks = await Promise.all(claimed.map((p) => d.verifier.verify(p)));
  claimed.forEach((p, i) => {
    if (!oks[i]) return;
    d.sched.markVerified(p);
    d.partial.recordVerified(p);
    const [start, end] = d.sched.pieceRange(p);
    d.resumed += end - start;
  });
  d.received = d.resumed;
  const kept = d.sched.verifiedPieces;
  const bad = claimed.length - kept;
  console.error(
    `udpget: resuming ${out}: ${kept} of ${d.sched.pieceCount} pieces already verified` +
      (bad === 1 ? ", 1 failed its re-check and will be fetched again" : "") +
      (bad > 1 ? `, ${bad} failed their re-check and will be fetched again` : ""),
  );
}

/** A chunk request of one lane, from send to completion or loss. */
interface LaneRequest {
  a: Assignment;
  sentAt: number;
  received: number;
}

/**
 * One (worker, server) lane: its own socket to that server, a pipeline of requests bounded by
 * the server's congestion window and the socket's buffer, loss detection by time threshold
 * and by timeout (`Promise.race` of the lane's next event against its earliest deadline).
 */
async function lane(d: Download, worker: number, run: ServerRun): Promise<void> {
  const win = new RequestWindow();
  const open = new Map<number, LaneRequest>();
  const events = new Notifier();
  const now = () => Date.now();

  /** `retry`: a new address token arrived, ask again; `error`: the server refused. */
  const finish = (id: number, how: "complete" | "retry" | "error") => {
    const r = open.get(id);
    if (!r) return;
    open.delete(id);
    d.endpoint.close(id);
    const t = now();
    const rtt = run.health.rtt.srtt ?? 1;
    const lostEarlier = win.finish(id, t, rtt);
    if (how === "complete") {
      run.health.rtt.addSample(t - r.sentAt);
      run.cwnd.onAck(r.a.length, r.sentAt);
    }
    // an error answer gives the piece up: this server cannot serve it now, another may
    d.sched.release(r.a, how === "error");
    for (const l of lostEarlier) lose(l.id, false);
    if (how === "complete") {
      for (const other of run.lanes) {
        if (other.win === win) continue;
        for (const l of other.win.lostBefore(r.sentAt, t, rtt)) other.lose(l.id, false);
      }
    }
    events.notify();
  };

  /** A request's missing blocks are given back; `timeout` also gives up the piece. */
  const lose = (id: number, timeout: boolean) => {
    const r = open.get(id);
    if (!r) return;
    open.delete(id);
    d.endpoint.close(id);
    d.rerequested += r.a.length - r.received;
    const t = now();
    if (timeout && r.received === 0) run.cwnd.onPersistentLoss(t, r.sentAt);
    else run.cwnd.onLoss(r.sentAt, t, r.a.length - r.received);
    d.sched.release(r.a, timeout);
    if (timeout && !run.health.onTimeout(r.sentAt, t, d.lastHeard())) dropServer(d, run);
    d.changed.notify();
    events.notify();
  };
  run.lanes.push({ win, lose });

  const send = async (a: Assignment) => {
    const r: LaneRequest = { a, sentAt: now(), received: 0 };
    const seen = new Uint8Array(a.blockCount);
    const id = d.endpoint.open(run.index, (p) => {
      if (p.type === "retry") return finish(id, "retry"); // asked again with the new token
      if (p.type === "error") {
        if (!run.health.onError(p.code, p.message, now())) dropServer(d, run);
        run.pausedUntil = now() + run.health.rtt.rto(); // BUSY & co: not again at once
        return finish(id, "error");
      }
      if (p.type !== "chunk_reply" || p.fileId !== d.fileId) return;
      const block = (p.offset - a.offset) / d.blockSize;
      if (!(block >= 0 && block < a.blockCount && Number.isInteger(block)) || seen[block]) return;
      const t = now();
      run.health.onHeard(t);
      const o = d.sched.onBlock(p.offset, p.data.length);
      if (o.kind === "invalid") return;
      seen[block] = 1;
      r.received += p.data.length;
      if (o.kind === "new") {
        writeAt(d.partial.file, p.data, p.offset);
        run.bytes += p.data.length;
        d.sources.record(a.piece, run.index);
        run.lastAt = t;
        d.received += p.data.length;
        if (o.pieceComplete) void settlePiece(d, a.piece);
      }
      if (r.received === a.length) finish(id, "complete");
    });
    open.set(id, r);
    if (run.firstAt === 0) run.firstAt = r.sentAt;
    win.sent(id, a.length, r.sentAt, run.health.rtt.rto());
    const packet = encode({
      type: "chunk_request",
      requestId: id,
      token: d.endpoint.token(run.index),
      fileId: d.fileId,
      offset: a.offset,
      length: a.length,
      blockSize: d.blockSize,
      name: d.name,
    });
    await d.endpoint.send(worker, run.index, packet);
  };

  while (!d.finished && run.health.alive) {
    const cap = Math.min(d.laneBytes, run.cwnd.bytes / d.endpoint.workers);
    let a: Assignment | undefined;
    const paused = run.pausedUntil - now();
    if (paused > 0 && open.size === 0) {
      await withTimeout(d.changed.wait(), paused);
      continue;
    }
    // (re-checked each turn: the server may be dropped while this lane awaits the limiter)
    while (
      run.health.alive && !d.finished && run.pausedUntil <= now() &&
      win.canSend(d.requestBlocks * d.blockSize, cap)
    ) {
      a = d.sched.next(run.index, d.requestBlocks);
      if (!a) break;
      const wait = d.limiter?.take(a.length, now()) ?? 0;
      if (wait > 1) await sleep(wait);
      await send(a);
    }
    if (open.size === 0 && !a) {
      // nothing to do until work is released elsewhere (or the end)
      // (the 1 s bound is only a safety net: every change notifies)
      await withTimeout(Promise.race([d.changed.wait(), events.wait()]), 1000);
      continue;
    }
    const wake = Math.max(0, win.nextDeadline() - now());
    await withTimeout(events.wait(), wake);
    for (const l of win.expire(now())) lose(l.id, true);
  }
  for (const id of [...open.keys()]) {
    d.endpoint.close(id);
    d.sched.release(open.get(id)!.a, !run.health.alive);
  }
  if (!run.health.alive) d.sched.dropServer(run.index); // nothing stays owned by a dead server
  if (d.alive === 0) d.finish();
}

function dropServer(d: Download, run: ServerRun): void {
  if (run.health.alive) return;
  // every time, not once: a lane may have taken a piece for this server since the last call
  d.sched.dropServer(run.index);
  if (run.dropped) return;
  run.dropped = true;
  note(`udpget: ${run.addr.label}: dropped (${run.health.dropReason})`);
  d.changed.notify();
  if (d.alive === 0) d.finish();
}

/**
 * Checks a completed piece on the verifier thread. A bad one is fetched again, and the server
 * that sent it (or, after repeated offences, one of several that shared it) is excluded.
 */
async function settlePiece(d: Download, piece: number): Promise<void> {
  const ok = await d.verifier.verify(piece);
  d.sched.settlePiece(piece, ok);
  if (ok) {
    d.sources.verified(piece);
    d.partial.recordVerified(piece);
  } else {
    note(`udpget: piece ${piece} failed its SHA-256; fetching it again`);
    for (const server of d.sources.corrupt(piece)) {
      const run = d.runs.find((r) => r.index === server);
      if (!run) continue;
      run.health.drop(`excluded: sent bytes that failed the hash of piece ${piece}`);
      dropServer(d, run);
    }
    d.changed.notify();
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
        token: d.endpoint.token(run.index),
        fileId: d.fileId,
        firstPiece: first,
        count: Math.min(0xffff, count - first),
        name: d.name,
      }), run.health.rtt.rto());
    if (reply?.type !== "hashes_reply" || reply.firstPiece !== first || reply.hashes.length === 0) {
      failures++;
      continue;
    }
    const take = Math.min(reply.hashes.length, (count - first) * 32);
    hashes.set(reply.hashes.subarray(0, take), first * 32);
    next = first + take / 32;
  }
  if (next < count) return undefined;
  if (toHex(sha256(hashes)) !== toHex(d.meta.piecesRoot)) {
    console.error("udpget: piece hash list does not match the agreed root; using the file digest");
    return undefined;
  }
  return hashes;
}

/** Candidate block sizes for `--block-size auto`, largest first (RFC 8899-style probing). */
export const PROBE_BLOCK_SIZES = [65000, 32768, 8972 - 28, 1472 - 28, 1200];

/**
 * Finds the largest block that gets through to every chosen server: one single-block request
 * per candidate size, all at once; the largest answered by all wins (1200 if none is).
 */
async function probeBlockSize(
  endpoint: ClientEndpoint,
  chosen: number[],
  name: string,
  meta: FileMeta,
  signal: AbortSignal,
): Promise<number> {
  const fileId = fileIdOf(meta.digest);
  const sizes = PROBE_BLOCK_SIZES.filter((s) => s <= meta.maxBlock);
  if (meta.size === 0 || sizes.length === 0) return Math.min(1200, meta.maxBlock);
  const works = await Promise.all(sizes.map(async (blockSize) => {
    const length = Math.min(blockSize, meta.size);
    const answers = await Promise.all(chosen.map(async (server) => {
      for (let attempt = 0; attempt < 2 && !signal.aborted; attempt++) {
        const r = await request(endpoint, 0, server, (requestId) =>
          encode({
            type: "chunk_request",
            requestId,
            token: endpoint.token(server),
            fileId,
            offset: 0,
            length,
            blockSize,
            name,
          }), 300);
        if (r?.type === "chunk_reply") return r.data.length === length;
      }
      return false;
    }));
    return answers.every((x) => x);
  }));
  const best = sizes.find((_, i) => works[i]);
  return Math.min(PROBE_CAP, best ?? 1200);
}

/**
 * Largest block `auto` picks. Bigger datagrams cost less per byte, but a socket buffers fewer
 * of them (see `laneDatagrams`); measured on loopback, 32 KiB was the best trade-off.
 */
export const PROBE_CAP = 32768;

function writeAt(file: Deno.FsFile, data: Uint8Array, offset: number): void {
  // Sync seek+write: no other lane can move the position in between.
  file.seekSync(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < data.length) done += file.writeSync(data.subarray(done));
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
    const active = Math.max(1e-3, (r.lastAt - r.firstAt) / 1000);
    return `${r.addr.label} ${pct.toFixed(0)}% at ${formatRate(r.bytes / active)}`;
  }).join(", ");
  const fetched = d.meta.size - d.resumed;
  const resumed = d.resumed > 0 ? `, ${formatBytes(d.resumed)} resumed` : "";
  return `udpget: ${out}: ${formatBytes(d.meta.size)} in ${secs.toFixed(2)} s ` +
    `(${formatRate(fetched / Math.max(secs, 1e-3))}${resumed}), ${d.verified}; ` +
    `block ${d.blockSize} B, re-requested ${formatBytes(d.rerequested)}; from ${shares}`;
}
