/**
 * `udpget fetch`: asks every server about the file, keeps those that agree, pulls pieces from
 * all of them over `<connections>` workers, verifies every piece and the whole file, and only
 * then renames `OUT.part` to `OUT`.
 *
 * Decisions (what to ask whom, when a server is dead, which metadata wins, what to trust) are
 * made by the pure fetch coordinator (`lib/engine/fetch_coordinator.ts`); this file is its
 * shell: the sockets, the `.part` and its writer, the piece verifier, the streamed output, the
 * terminal, and one drive loop that moves bytes and answers between them and the coordinator.
 *
 * @module
 */

import { lookup } from "node:dns/promises";
import { basename, dirname, join } from "node:path";
import { type FetchArgs, parseFetchArgs } from "./lib/cli/cli_args.ts";
import { toHex } from "./lib/engine/consensus.ts";
import { ClientEndpoint, type ServerAddr } from "./lib/io/endpoint.ts";
import { ExitCode, ioMessage, UdpgetError } from "./lib/base/exit.ts";
import type { ProgressView } from "./lib/cli/progress.ts";
import { RateWindow } from "./lib/cli/rate_window.ts";
import { StatusLine } from "./lib/cli/status_line.ts";
import {
  type FetchReport,
  formatReport,
  type IoReport,
  type ServerReport,
  type ServerStatus,
  type SwarmReport,
} from "./lib/cli/fetch_report.ts";
import { batchedUnavailable } from "./lib/io/udp/open_socket.ts";
import { type BlockSink, BlockWriter } from "./lib/io/block_writer.ts";
import { VectoredWriter } from "./lib/io/vectored_writer.ts";
import { loadLibc } from "./lib/io/udp/libc.ts";
import { OrderedOutput } from "./lib/io/ordered_output.ts";
import { RingSink, streamRingPieces } from "./lib/io/piece_ring.ts";
import { parseBusyProgress } from "./lib/wire/busy_progress.ts";
import { sha256 } from "./lib/io/file_digest.ts";
import { Notifier } from "./lib/io/notifier.ts";
import { LineReader } from "./lib/io/line_reader.ts";
import { openPieceVerifier, type PieceVerifier } from "./lib/io/piece_verifier.ts";
import {
  keepAfterFailure,
  PartialDownload,
  type SpaceReserver,
} from "./lib/io/partial_download.ts";
import { reserveSpace } from "./lib/io/disk_space.ts";
import { readKeyFile } from "./lib/wire/auth.ts";
import type { CoordinatorAction } from "./lib/engine/fetch_actions.ts";
import { FetchCoordinator } from "./lib/engine/fetch_coordinator.ts";
import { encode } from "./lib/wire/packet.ts";
import { parseServerList, type ServerSpec } from "./lib/cli/servers.ts";
import { formatServer } from "./lib/base/format.ts";
import { fetchSummary } from "./lib/cli/fetch_summary.ts";
import { withTimeout } from "./lib/io/timer.ts";
import { SwarmSocket } from "./lib/io/swarm_socket.ts";
import { infoHashOf, SwarmDrive } from "./lib/io/swarm_drive.ts";
import { infoHashHex } from "./lib/swarm/swarm_id.ts";
import type { PeerAddr } from "./lib/swarm/swarm_node.ts";
import { formatBytes } from "./lib/base/format.ts";

/**
 * The progress line's renderer, loaded only when there is a terminal to show it on: its
 * text-width packages cost about 40 ms of CPU at start, and eight fetchers started at once on
 * two cores wait for each other's start-up.
 */
let renderProgress: ((v: ProgressView, width: number) => string) | undefined;

/** `udpget fetch ...`: resolves with the exit status. */
export async function runFetch(args: string[]): Promise<number> {
  const started = performance.now();
  const a = parseFetchArgs(args);
  if (!a.quiet && Deno.stderr.isTerminal()) {
    renderProgress = (await import("./lib/cli/progress.ts")).renderProgress;
  }
  const run = new FetchRun(started, a);
  let reported = false;
  // the report goes out the moment the file is in place: seeding (a swarm) may follow
  const done = () => {
    reported = true;
    if (a.json) printLine(formatReport(run.report(undefined)));
  };
  try {
    await fetchFile(a, run, done);
    if (!reported) done();
    return ExitCode.Ok;
  } catch (e) {
    run.ui.stop();
    if (a.json && !reported) printLine(formatReport(run.report(e)));
    throw e;
  }
}

async function fetchFile(a: FetchArgs, run: FetchRun, done: () => void): Promise<void> {
  if (a.file === undefined && isStdinPath(a.serversFile)) {
    // stdin holds the list, so there is nothing left to answer the prompt with
    throw new UdpgetError(ExitCode.Usage, "fetch: give <file> when the servers list is on stdin");
  }
  refuseTerminal(a.output);
  const early = a.file === undefined ? a.output : await outputPath(a.output, a.file);
  // a file in the way, or a directory that is not there, is known before any network traffic
  if (early !== undefined && !(await isDirectoryOutput(early))) {
    await checkOutput(early, a.force, true);
  }
  const servers = await loadServers(a.serversFile);
  run.servers = servers.map((s) => ({
    server: s.label,
    status: "unknown",
    bytes: 0,
    reason: null,
  }));
  const key = a.secretFile === undefined ? undefined : await readKeyFile(a.secretFile);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const endpoint = openEndpoint(servers, a, key);
  run.io = ioReport(endpoint, a);
  let swarm: SwarmSetup | undefined;
  try {
    swarm = a.swarm && await openSwarm(a, servers, key, (l) => run.ui.say(l));
    const coordinator = new FetchCoordinator({
      servers,
      lanes: endpoint.workers,
      receiveBuffer: endpoint.receiveBuffer,
      blockSize: a.blockSize,
      limitBytesPerSec: a.limit,
      verify: a.verify,
      checksum: a.checksum,
      keyed: a.secretFile !== undefined,
      nextRequestId: randomId,
      sha256,
      // a swarm's fetchers ask the servers for different pieces first
      pieceOrder: swarm ? shuffled : undefined,
    });
    run.coordinator = coordinator;
    // a swarm fetcher's first requests already carry the swarm flag (PROTOCOL.md §10.6): the
    // first seconds, before peers meet, are when the fetchers all ask the server at once
    if (swarm) coordinator.askServersAsSwarm(true);
    phase("start");
    const drive = new FetchDrive(endpoint, coordinator, servers, a, run, stop.signal, swarm);
    await drive.fetch();
    done();
    if (swarm) await drive.seed(a.swarm!.seedTime);
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await endpoint.shutdown();
    await swarm?.close();
  }
}

/**
 * The swarm socket and tracker, ready before the fetch starts (`--tracker`), and the swarm's
 * drive once it starts.
 */
interface SwarmSetup {
  socket: SwarmSocket;
  tracker: PeerAddr;
  trackerLabel: string;
  family: "ipv4" | "ipv6";
  key?: Uint8Array;
  /** The drive of the swarm, once started (when the piece hashes are trusted). */
  drive?: SwarmDrive;
  close(): Promise<void>;
}

/**
 * Resolves the tracker and binds the swarm socket (the port peers reach this node on), in the
 * servers' address family. A tracker or `--host` of the other family is a usage error; a tracker
 * name that does not resolve now, or a port that cannot be bound, costs only the swarm's help:
 * one line, and the fetch goes on from the servers (undefined).
 */
async function openSwarm(
  a: FetchArgs,
  servers: ServerAddr[],
  key: Uint8Array | undefined,
  say: (line: string) => void,
): Promise<SwarmSetup | undefined> {
  const o = a.swarm!;
  const family = servers[0]?.family ?? "ipv4";
  const t = await resolveServer(o.tracker);
  const trackerLabel = formatServer(o.tracker.host, o.tracker.port);
  if (typeof t === "string") {
    // the servers alone can still deliver the file: the swarm's help is all that is lost
    say(`udpget: tracker ${trackerLabel}: cannot resolve (${t}); fetching without the swarm`);
    return undefined;
  }
  if (t.family !== family) {
    throw new UdpgetError(
      ExitCode.Usage,
      `--tracker ${trackerLabel} is ${t.family}, the servers ${family}: a swarm shares one family`,
    );
  }
  // (a socket of the other family could neither reach the tracker nor be reached by peers)
  const hostFamily = o.host?.includes(":") ? "ipv6" : "ipv4";
  if (o.host !== undefined && o.host !== "localhost" && hostFamily !== family) {
    throw new UdpgetError(
      ExitCode.Usage,
      `--host ${o.host} is ${hostFamily}, the servers ${family}: a swarm shares one family`,
    );
  }
  const host = o.host === "localhost"
    ? (family === "ipv4" ? "127.0.0.1" : "::1")
    : o.host ?? (family === "ipv4" ? "0.0.0.0" : "::");
  let socket: SwarmSocket;
  try {
    socket = SwarmSocket.open(a.io, host, o.sharePort);
  } catch (e) {
    // (a port in use, an address not on this machine): the servers alone still deliver the file
    const where = formatServer(host, o.sharePort);
    say(`udpget: cannot share on ${where}: ${ioMessage(e)}; fetching without the swarm`);
    return undefined;
  }
  const setup: SwarmSetup = {
    socket,
    tracker: { hostname: t.hostname, port: t.port },
    trackerLabel,
    family,
    key,
    close: async () => {
      if (setup.drive) await setup.drive.close();
      else await socket.close();
    },
  };
  return setup;
}

/** A random permutation of `0 .. n-1`. */
function shuffled(n: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  const r = new Uint32Array(n);
  crypto.getRandomValues(r);
  for (let i = n - 1; i > 0; i--) {
    const j = r[i] % (i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** The client's sockets on the layer `--io` allows; a clear error when they cannot be opened. */
function openEndpoint(servers: ServerAddr[], a: FetchArgs, key?: Uint8Array): ClientEndpoint {
  try {
    return new ClientEndpoint(servers, a.connections, key, a.io);
  } catch (e) {
    const code = a.io === "ffi" ? ExitCode.Usage : ExitCode.LocalIo;
    throw new UdpgetError(code, `cannot open sockets: ${ioMessage(e)}`);
  }
}

/** Which datagram layer carries this fetch, for `--json`. */
function ioReport(endpoint: ClientEndpoint, a: FetchArgs): IoReport {
  return {
    layer: endpoint.layer,
    features: endpoint.features,
    receiveBuffer: endpoint.receiveBuffer,
    fallbackReason: endpoint.layer === "deno" ? batchedUnavailable(a.io) ?? null : null,
  };
}

/**
 * What the user sees on stderr: messages (none with `--quiet`: errors are printed by the
 * caller) and, on a terminal, a status line kept below them.
 */
class FetchUi {
  #line: StatusLine | undefined;

  constructor(readonly quiet: boolean) {}

  /** An informational line (a server dropped, a resume...). */
  say(line: string): void {
    if (this.quiet) return;
    if (this.#line) this.#line.note(line);
    else console.error(line);
  }

  /** Shows `render(width)` as the status line until `stop` (on a terminal, without --quiet). */
  status(render: (width: number) => string): void {
    this.stop();
    if (!this.quiet && Deno.stderr.isTerminal()) this.#line = new StatusLine(render);
  }

  /**
   * Ends the status line and clears it: the hashing line gives way to the transfer line, and
   * the transfer line to the summary (whose average rate would contradict its current one).
   */
  stop(): void {
    this.#line?.stop(false);
    this.#line = undefined;
  }
}

/** Everything known about this fetch, for the summary and the `--json` report. */
class FetchRun {
  readonly ui: FetchUi;
  servers: ServerReport[] = [];
  file: string | undefined;
  output: string | undefined;
  /** The fetch itself: the metadata, block size, verification, bytes and sources. */
  coordinator: FetchCoordinator | undefined;
  /** The datagram layer in use. */
  io: IoReport | undefined;
  /** The swarm, once it started (`--tracker`). */
  swarm: SwarmSetup | undefined;

  /** When the fetch began: the command's start, or the moment a prompted name was entered. */
  started: number;

  constructor(started: number, a: FetchArgs) {
    this.started = started;
    this.ui = new FetchUi(a.quiet);
    this.file = a.file;
  }

  /** Records what became of server `i` (index in the servers file). */
  setServer(i: number, status: ServerStatus, reason: string | null): void {
    const s = this.servers[i];
    if (s) Object.assign(s, { status, reason });
  }

  /** The report of this run ending with `error` (undefined: success). */
  report(error: unknown): FetchReport {
    const c = this.coordinator;
    const session = c?.session;
    const peerBytes = new Map<number, number>();
    for (const st of session?.stats() ?? []) {
      const peer = c!.peerOf(st.source);
      if (peer !== undefined) peerBytes.set(peer, st.bytes);
      const s = this.servers[c!.serverOf(st.source)];
      if (s) s.bytes = st.bytes;
    }
    const exitCode = error === undefined
      ? ExitCode.Ok
      : error instanceof UdpgetError
      ? error.exitCode
      : ExitCode.Internal;
    return {
      ok: error === undefined,
      exitCode,
      error: error === undefined ? null : ioMessage(error),
      file: this.file ?? null,
      output: this.output ?? null,
      size: c?.meta?.size ?? null,
      sha256: c?.meta ? toHex(c.meta.digest) : null,
      seconds: (performance.now() - this.started) / 1000,
      hashWaitSeconds: (c?.hashWaitMs ?? 0) / 1000,
      bytes: {
        fetched: session?.received ?? 0,
        resumed: c?.resumed ?? 0,
        rerequested: session?.rerequested ?? 0,
      },
      blockSize: c?.blockSize ?? null,
      verification: c?.verification ?? null,
      servers: this.servers,
      io: this.io ?? null,
      swarm: this.#swarmReport(peerBytes),
    };
  }

  /** The swarm's part of the report: bytes from servers and peers, what was sent, the peers. */
  #swarmReport(peerBytes: Map<number, number>): SwarmReport | null {
    const drive = this.swarm?.drive;
    const c = this.coordinator;
    if (!drive || !c?.meta) return null;
    const fromPeers = [...peerBytes.values()].reduce((a, b) => a + b, 0);
    return {
      tracker: this.swarm!.trackerLabel,
      infoHash: infoHashHex(infoHashOf(c.meta)),
      port: drive.socket.port,
      fromServers: this.servers.reduce((a, s) => a + s.bytes, 0),
      fromPeers,
      uploaded: drive.socket.stats.uploaded,
      peers: drive.node.peers.map((p, id) => ({
        peer: p.address,
        bytes: peerBytes.get(id) ?? 0,
        alive: p.alive,
        reason: p.reason ?? null,
      })),
    };
  }
}

/** One line on stdout (the JSON report), written whole. */
function printLine(line: string): void {
  const bytes = new TextEncoder().encode(line + "\n");
  for (let done = 0; done < bytes.length;) done += Deno.stdout.writeSync(bytes.subarray(done));
}

/** True for the servers-file names that mean "read the list from stdin". */
export function isStdinPath(path: string): boolean {
  return path === "-" || path === "/dev/stdin";
}

/**
 * Reads the servers file, or all of stdin for `-` and `/dev/stdin`. Stdin is read through
 * Deno.stdin rather than by opening /dev/stdin, which Deno refuses without --allow-all.
 */
async function readServersText(path: string): Promise<string> {
  try {
    if (isStdinPath(path)) return await new Response(Deno.stdin.readable).text();
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new UdpgetError(ExitCode.Usage, `cannot read servers file ${path}: ${ioMessage(e)}`);
  }
}

/**
 * Reads, parses and resolves the servers file. Every bad line, and every name that does not
 * exist (a typo), is reported, then exit 2; a duplicate is said and used once; a name whose
 * lookup failed for now (DNS unreachable) is warned about and left out.
 */
export async function loadServers(path: string): Promise<ServerAddr[]> {
  const text = await readServersText(path);
  const where = isStdinPath(path) ? "<stdin>" : path;
  const list = parseServerList(text);
  for (const w of list.warnings) console.error(`udpget: ${where}:${w.line}: ${w.message}`);
  if (list.servers.length === 0 && list.errors.length === 0) {
    throw new UdpgetError(ExitCode.Usage, `${where}: no servers listed`);
  }
  const resolved = await Promise.all(list.servers.map(resolveServer));
  const errors = [...list.errors];
  resolved.forEach((r, i) => {
    if (typeof r !== "string") return;
    const s = list.servers[i];
    if (r === "ENOTFOUND") errors.push({ line: s.line, message: `no such host ${s.host}` });
    else console.error(`udpget: ${where}:${s.line}: cannot resolve ${s.host} now (${r}); left out`);
  });
  if (errors.length > 0) {
    // every bad line in file order; the last one is the error that ends the run, so it is
    // printed last by main() and the user sees them all, top to bottom, before exit 2
    errors.sort((a, b) => a.line - b.line);
    const last = errors[errors.length - 1];
    for (const err of errors.slice(0, -1)) {
      console.error(`udpget: ${where}:${err.line}: ${err.message}`);
    }
    throw new UdpgetError(ExitCode.Usage, `${where}:${last.line}: ${last.message}`);
  }
  const ok = resolved.filter((s): s is ServerAddr => typeof s !== "string");
  if (ok.length === 0) {
    throw new UdpgetError(ExitCode.Unreachable, "no server address could be resolved");
  }
  return ok;
}

/** The address of one entry, or the lookup's error code ("ENOTFOUND": no such name). */
async function resolveServer(s: ServerSpec): Promise<ServerAddr | string> {
  const label = formatServer(s.host, s.port);
  try {
    const { address, family } = await lookup(s.host);
    return { label, hostname: address, port: s.port, family: family === 6 ? "ipv6" : "ipv4" };
  } catch (e) {
    return (e as { code?: string }).code ?? ioMessage(e);
  }
}

/**
 * Asks `question` on stderr (stdout stays for results) and reads one line; undefined at end of
 * input (Ctrl-D). Ctrl-C arrives as SIGINT, which aborts `signal`: that is exit 130, not 2.
 */
async function promptLine(
  question: string,
  lines: LineReader,
  signal: AbortSignal,
): Promise<string | undefined> {
  await Deno.stderr.write(new TextEncoder().encode(question));
  try {
    const line = await lines.readLine(signal);
    // Ctrl-D is not echoed: without this the error would follow the question on its line
    if (line === undefined) await Deno.stderr.write(new TextEncoder().encode("\n"));
    return line;
  } catch (e) {
    if (!signal.aborted) throw e;
    // the terminal echoed "^C" after the question: end that line before the error message
    await Deno.stderr.write(new TextEncoder().encode("\n"));
    throw new UdpgetError(ExitCode.Interrupted, "interrupted");
  }
}

/**
 * Refuses an output that is in the way (exists and no `--force`, or is a directory) or whose
 * directory does not exist. `-`, devices and pipes are streamed to and need no check.
 */
async function checkOutput(out: string, force: boolean, early = false): Promise<void> {
  if (STREAM_NAMES.has(out)) return;
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(out);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new UdpgetError(ExitCode.LocalIo, `cannot write ${out}: ${ioMessage(e)}`);
    }
    if (early) await checkDirectory(out);
    return; // does not exist: fine
  }
  if (info.isDirectory) throw new UdpgetError(ExitCode.LocalIo, `${out} is a directory`);
  if (!info.isFile) return; // a device or a pipe: streamed to
  if (!force) {
    throw new UdpgetError(ExitCode.OutputExists, `${out} exists; use --force to overwrite it`);
  }
}

/**
 * Where the file `name` is saved: `-o OUT` as given, or inside it when it is an existing
 * directory or ends in "/" (as curl's `--output-dir` and wget's `-P`); the file's own name in
 * the current directory without `-o`.
 */
async function outputPath(output: string | undefined, name: string): Promise<string> {
  if (output === undefined) return basename(name);
  if (STREAM_NAMES.has(output) || !(await isDirectoryOutput(output))) return output;
  return join(output, basename(name));
}

/** Whether `-o` names a directory to save into: it ends in "/", or is an existing directory. */
async function isDirectoryOutput(output: string): Promise<boolean> {
  if (STREAM_NAMES.has(output)) return false;
  if (output.endsWith("/")) return true;
  return (await Deno.stat(output).catch(() => undefined))?.isDirectory === true;
}

/** Binary on a terminal helps nobody (curl refuses the same way): pipe it, or name a file. */
function refuseTerminal(output: string | undefined): void {
  if (output !== undefined && STDOUT_NAMES.includes(output) && Deno.stdout.isTerminal()) {
    throw new UdpgetError(
      ExitCode.Usage,
      "refusing to write the file to a terminal: use -o FILE, or pipe the output",
    );
  }
}

/** The directory `out` would be created in must exist. */
async function checkDirectory(out: string): Promise<void> {
  const dir = dirname(out);
  const info = await Deno.stat(dir).catch(() => undefined);
  if (!info?.isDirectory) {
    throw new UdpgetError(ExitCode.LocalIo, `cannot write ${out}: no directory ${dir}`);
  }
}

function abortCheck(signal: AbortSignal): void {
  if (signal.aborted) throw new UdpgetError(ExitCode.Interrupted, "interrupted");
}

// ---------------------------------------------------------------------------------------
// The shell around the coordinator

/**
 * One fetch's I/O around its coordinator: replies go in as they arrive (new blocks are written
 * at once, from the receive batch), requests go out as the coordinator releases them, and what
 * it asks for (check the output, open the `.part`, open the verifier, verify a piece, the
 * digest) is done here and answered. Between the two, one loop sleeps until the next datagram,
 * verification or timer (`Promise.race` in `withTimeout`).
 */
class FetchDrive {
  /** Wakes the drive loop: a datagram arrived, a piece was verified, the user interrupted. */
  readonly wake = new Notifier();
  /** Prompts for the file name (no `<file>` given). */
  #lines: LineReader | undefined;
  /** Where the file goes, once its name is known. */
  #out: string | undefined;
  /** A streamed output (`-o -`, a pipe, a device) and the private directory of its `.part`. */
  #sink: WritableStreamDefaultWriter<Uint8Array> | undefined;
  /** The swarm was left: no piece hashes to check peers' bytes with. */
  #swarmLeft = false;
  #tmp: string | undefined;
  #ring = 0;
  #partial: PartialDownload | undefined;
  /** Received blocks go into the `.part` through it, in runs. */
  #writer: BlockSink | undefined;
  #verifier: PieceVerifier | undefined;
  /** Streamed output: verified pieces in order, read from the `.part` by this handle. */
  #output: OrderedOutput | undefined;
  #outputFile: Deno.FsFile | undefined;
  /** Pieces being verified right now. */
  #verifying = 0;
  /** A local fault found off the drive loop (the `.part` could not be read back). */
  #fatal: UdpgetError | undefined;
  #finished = false;
  #debug: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly endpoint: ClientEndpoint,
    readonly coordinator: FetchCoordinator,
    readonly servers: ServerAddr[],
    readonly a: FetchArgs,
    readonly run: FetchRun,
    readonly signal: AbortSignal,
    readonly swarm?: SwarmSetup,
  ) {}

  /** The whole fetch: resolves once `OUT` is in place (or streamed), throws the error that ended it. */
  async fetch(): Promise<void> {
    const { endpoint, coordinator, run, signal } = this;
    endpoint.routeOthers((server, p) => {
      const now = performance.now();
      const w = coordinator.handleDatagram(now, server, p);
      const writer = this.#writer;
      if (w) writer!.stage(w.offset, w.data, 0, w.data.length);
      writer?.flush();
      if (coordinator.wantsService(now)) this.wake.notify();
    });
    // a server gone: its port answers ICMP refused (batched layer only)
    endpoint.onSoftError((server, error) => {
      coordinator.handleUnreachable(performance.now(), server, error);
      this.wake.notify();
    });
    const onAbort = () => this.wake.notify();
    signal.addEventListener("abort", onAbort, { once: true });
    let ok = false;
    let kept = false;
    try {
      await this.#begin();
      await this.#drive();
      await this.#complete();
      ok = true;
      phase("summary");
      run.ui.say(
        summary(this.coordinator, this.servers, this.#out!, performance.now() - run.started),
      );
    } catch (e) {
      kept = await this.#keep(e);
      throw e;
    } finally {
      signal.removeEventListener("abort", onAbort);
      endpoint.routeOthers(undefined);
      endpoint.routeChunks(undefined);
      endpoint.onSoftError(undefined);
      clearInterval(this.#debug);
      if (this.#debug !== undefined) {
        const layer = JSON.stringify(endpoint.layerStats());
        const writes = this.#writer?.writes;
        console.error(`debug: layer ${layer}, writes ${writes}, sent ${endpoint.stats.sent}`);
      }
      run.ui.stop();
      this.#writer?.close();
      this.#verifier?.close();
      this.#outputFile?.close();
      if (!ok && !kept) await this.#partial?.discard();
      if (this.#tmp) await Deno.remove(this.#tmp, { recursive: true }).catch(() => {});
    }
  }

  /** Asks about `<file>`, or prompts on a terminal for the name. */
  async #begin(): Promise<void> {
    if (this.a.file !== undefined) return this.coordinator.start(performance.now(), this.a.file);
    if (!Deno.stdin.isTerminal()) {
      throw new UdpgetError(ExitCode.Usage, "missing <file> (and stdin is not a terminal to ask)");
    }
    this.#lines = new LineReader(Deno.stdin);
    await this.#prompt();
  }

  /** Reads a name at the prompt (again while no server has the one given) and asks about it. */
  async #prompt(): Promise<void> {
    for (;;) {
      const name = (await promptLine("File to fetch: ", this.#lines!, this.signal))?.trim();
      if (name === undefined) {
        throw new UdpgetError(ExitCode.Usage, "no file name given (end of input at the prompt)");
      }
      this.run.started = performance.now(); // the time the user took to type is not the fetch's
      if (name === "") continue;
      return this.coordinator.start(performance.now(), name);
    }
  }

  /**
   * The drive loop: timers, sends and actions of the coordinator, then sleep until the next
   * datagram, verification or timer. Returns once the file is complete and verified.
   */
  async #drive(): Promise<void> {
    const { coordinator, endpoint } = this;
    while (!this.#finished) {
      abortCheck(this.signal);
      const fault = this.#localFault();
      if (fault) coordinator.handleLocalFault(fault);
      const now = performance.now();
      coordinator.handleTimeout(now);
      const swarm = this.swarm?.drive;
      swarm?.service(now);
      for (let t = coordinator.pollTransmit(now); t; t = coordinator.pollTransmit(now)) {
        const bytes = encode(t.packet);
        if (t.peer !== undefined) {
          swarm?.sendToPeer(t.peer, bytes, t.copies);
          continue;
        }
        // each lane is a worker socket with its own receive buffer
        for (let c = 0; c < t.copies; c++) void endpoint.send(t.lane, t.server, bytes);
      }
      for (let n = swarm?.node.poll(); n; n = swarm?.node.poll()) this.run.ui.say(n.line);
      // an answer handed back (the output checked, the .part open...) has sends to go at once
      let answered = false;
      for (let act = coordinator.poll(); act; act = coordinator.poll()) {
        const r = this.#act(act);
        if (r !== undefined) answered = (await r) || answered;
      }
      if (answered || this.#finished) continue;
      const next = Math.min(
        coordinator.pollTimeout(performance.now()) ?? Infinity,
        swarm?.pollTimeout() ?? Infinity,
      );
      const wait = next === Infinity ? 1000 : Math.max(0, next - performance.now());
      await withTimeout(this.wake.wait(), wait);
    }
  }

  /**
   * Does what `act` asks. A promise (of whether something was answered back) when it takes I/O
   * the loop must wait for; undefined when it was done at once.
   */
  #act(act: CoordinatorAction): Promise<boolean> | undefined {
    const { run } = this;
    switch (act.kind) {
      case "phase":
        phase(act.phase);
        // servers hashing a big file on its first request answer BUSY meanwhile: their progress
        if (act.phase === "discovery") this.#hashingLine();
        // the hashing line gives way to what discovery found, and the transfer line to the end
        else if (act.phase === "output" || act.phase === "digest") run.ui.stop();
        return undefined;
      case "notice":
        run.ui.say(act.line);
        return undefined;
      case "server":
        run.setServer(act.server, act.status, act.reason);
        return undefined;
      case "check_output":
        return this.#checkOutput(act.name);
      case "open_part":
        return this.#openPart(act.piecewise);
      case "open_verifier":
        this.#openVerifier(act.hashes, act.whole);
        if (act.hashes && !act.whole) this.swarm?.drive?.trustHashes(act.hashes);
        else if (this.swarm?.drive) this.#leaveSwarm();
        return undefined;
      case "verify":
        this.#verify(act.piece);
        return undefined;
      case "digest":
        return this.#digest();
      case "finished":
        this.#finished = true;
        this.swarm?.drive?.node.completed(performance.now());
        return undefined;
      case "peer_dropped":
        this.swarm?.drive?.node.peerDropped(act.peer, act.reason, performance.now());
        return undefined;
      case "failed":
        return this.#failed(act.error);
    }
  }

  /** The hashing line: while servers answer BUSY, their progress. */
  #hashingLine(): void {
    const { coordinator } = this;
    const name = coordinator.name!;
    const servers = this.servers.length;
    this.run.ui.status((width) => {
      const busy = coordinator.busy();
      if (busy.length === 0) return "";
      const progress = busy.map(parseBusyProgress).filter((p) => p !== undefined);
      const done = progress.reduce((t, p) => t + p.done, 0);
      const total = progress.reduce((t, p) => t + p.total, 0);
      return renderProgress?.({
        phase: "hashing",
        name,
        busy: busy.length,
        servers,
        done: progress.length > 0 ? done : undefined,
        total: progress.length > 0 ? total : undefined,
        elapsedMs: performance.now() - (coordinator.firstBusyAt ?? performance.now()),
      }, width) ?? "";
    });
  }

  /** The file is chosen: where it goes must be writable before anything more is asked. */
  async #checkOutput(name: string): Promise<boolean> {
    const out = await outputPath(this.a.output, name);
    this.run.file = name;
    this.run.output = out;
    this.#out = out;
    await checkOutput(out, this.a.force, true);
    this.coordinator.handleOutputReady(performance.now());
    return true;
  }

  /**
   * The block size is known: opens the `.part` (in a private temporary directory for a stream,
   * where there is nothing to resume from) and its writer, and the transfer begins.
   */
  async #openPart(piecewise: boolean): Promise<boolean> {
    abortCheck(this.signal);
    const { a, coordinator, run } = this;
    const meta = coordinator.meta!;
    const name = coordinator.name!;
    const out = this.#out!;
    const sink = await openStreamTarget(out);
    this.#sink = sink;
    const tmp = sink ? await Deno.makeTempDir({ prefix: "udpget-" }) : undefined;
    const partOut = tmp ? join(tmp, basename(name) || "file") : out;
    // a stream verified piece by piece needs only its reorder buffer on disk, not the file
    const pieceCount = Math.ceil(meta.size / meta.pieceSize);
    const ring = sink && piecewise ? streamRingPieces(meta.pieceSize, pieceCount) : 0;
    this.#ring = ring;
    const capacity = ring > 0 ? Math.min(meta.size, ring * meta.pieceSize) : meta.size;
    let partial: PartialDownload;
    try {
      const say = (l: string) => run.ui.say(l);
      partial = await PartialDownload.open(
        partOut,
        name,
        meta,
        a.force,
        say,
        spaceReserver(),
        capacity,
      );
    } catch (e) {
      if (!tmp) throw e;
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      const m = e instanceof UdpgetError ? e.message : ioMessage(e);
      // the user gave no path: say which one it was, and how to choose another
      throw new UdpgetError(
        ExitCode.LocalIo,
        `${m} (the temporary copy -o - needs; TMPDIR sets where)`,
      );
    }
    this.#tmp = tmp;
    this.#partial = partial;
    const blocks = blockSink(this.endpoint, partial);
    const writer = ring > 0 ? new RingSink(blocks, meta.pieceSize, ring) : blocks;
    this.#writer = writer;
    coordinator.handlePartReady(performance.now(), {
      claimed: partial.claimed,
      ring,
      output: out,
    });
    this.#startSwarm(piecewise);
    this.#progressLine();
    // data goes straight to the coordinator's hot path, written in runs
    this.endpoint.routeChunks((now, server, h, data) => {
      if (coordinator.handleBlock(now, server, h)) {
        writer.stage(h.offset, data, h.dataAt, h.dataLen);
      }
    }, () => {
      // the batched layer's writer points into the receive slab, reused after this batch; the
      // copying writer flushes when a run breaks, its buffer fills, or before verification
      if (writer.holdsViews) writer.flush();
      // the loop runs when there is something to do; its own timer covers pacing and deadlines
      if (writer.error || coordinator.wantsService(performance.now())) this.wake.notify();
    });
    if (debugWanted()) {
      this.#debug = setInterval(() => {
        const session = coordinator.session!;
        const st = session.stats().map((x) =>
          `${x.source}:${x.alive ? "" : "dead "}${x.state} b=${x.bytes}`
        );
        console.error(
          `debug: ${session.received} ${session.sched.verifiedPieces} ${st.join(" | ")}`,
        );
      }, 500);
    }
    return true;
  }

  /** The progress line of the transfer (and of the hash list and re-check before it). */
  #progressLine(): void {
    const { coordinator, run } = this;
    const session = coordinator.session!;
    const meta = coordinator.meta!;
    const name = coordinator.name!;
    const rate = new RateWindow();
    run.ui.status((width) => {
      const now = performance.now();
      rate.sample(now, session.received);
      return renderProgress?.({
        phase: "transfer",
        name,
        total: meta.size,
        fetched: session.received,
        resumed: coordinator.resumed,
        rate: rate.rate(),
        alive: session.alive,
        servers: run.servers.length, // as listed: "2/3" says one of three is not helping
      }, width) ?? "";
    });
  }

  /**
   * The `.part` is open: the swarm starts, its info-hash known from the agreed metadata. Until
   * the piece hashes are trusted its peers may only give them (PROTOCOL.md §10.7); then their
   * bytes can be checked and the pieces verified here shared. Not for a stream: its `.part`
   * holds only a window.
   */
  #startSwarm(piecewise: boolean): void {
    const setup = this.swarm;
    if (!setup || setup.drive) return;
    // (--verify full, --checksum: nothing is trusted before the whole file, so no peer's bytes)
    if (!piecewise) return this.#leaveSwarm();
    if (this.#sink) {
      this.coordinator.askServersAsSwarm(false);
      this.run.ui.say("udpget: a streamed output is not shared: fetching without the swarm");
      return;
    }
    const drive = SwarmDrive.start({
      socket: setup.socket,
      tracker: setup.tracker,
      trackerLabel: setup.trackerLabel,
      shareRate: this.a.swarm!.shareRate,
      key: setup.key,
      coordinator: this.coordinator,
      meta: this.coordinator.meta!,
      partPath: this.#partial!.partPath,
      family: setup.family,
      servers: this.servers.map((s) => ({ hostname: s.hostname, port: s.port })),
      wake: () => this.wake.notify(),
    }, performance.now());
    setup.drive = drive;
    drive.listen(this.#writer!);
    this.run.swarm = setup;
  }

  /**
   * No piece hashes can vouch for peers' bytes (none could be had, or only the whole file is
   * trusted): the swarm is left, or not joined.
   */
  #leaveSwarm(): void {
    this.#swarmLeft = true;
    this.coordinator.askServersAsSwarm(false);
    this.swarm?.drive?.node.stop(performance.now());
    this.run.ui.say(
      "udpget: no piece hashes to check peers' bytes with: fetching without the swarm",
    );
  }

  /**
   * After the fetch: shares for `seconds` more (one status line), then announces `stopped` and
   * waits a moment for the tracker to hear it. Ctrl-C ends it early; the file is in place
   * either way, so the exit status is 0.
   */
  async seed(seconds: number): Promise<void> {
    const drive = this.swarm?.drive;
    if (!drive || this.#swarmLeft) return;
    const until = performance.now() + seconds * 1000;
    const node = drive.node;
    this.run.ui.status(() => {
      const left = Math.max(0, (until - performance.now()) / 1000).toFixed(0);
      return `seeding ${this.coordinator.name}: ${formatBytes(drive.socket.stats.uploaded)} ` +
        `sent to peers, ${node.livePeers} peers, ${left} s left (Ctrl-C to stop)`;
    });
    while (performance.now() < until && !this.signal.aborted) await this.#swarmTurn(until);
    node.stop(performance.now());
    const give = performance.now() + 2000;
    while (!node.stopped && performance.now() < give) await this.#swarmTurn(give);
    this.run.ui.stop();
  }

  /** One turn of the swarm alone (seeding): its timers and sends, then sleep until `until`. */
  async #swarmTurn(until: number): Promise<void> {
    const drive = this.swarm!.drive!;
    const now = performance.now();
    drive.service(now);
    for (let n = drive.node.poll(); n; n = drive.node.poll()) this.run.ui.say(n.line);
    const next = Math.min(drive.pollTimeout() ?? Infinity, until);
    await withTimeout(this.wake.wait(), Math.max(0, next - performance.now()));
  }

  /** The verification is decided: the verifier, and for a stream the ordered output. */
  #openVerifier(hashes: Uint8Array | undefined, whole: boolean): void {
    const meta = this.coordinator.meta!;
    const partial = this.#partial!;
    const ring = this.#ring;
    this.#verifier = openPieceVerifier(
      { path: partial.partPath, size: meta.size, pieceSize: meta.pieceSize, ring },
      hashes,
      whole,
    );
    const sink = this.#sink;
    if (!sink) return;
    // a piece goes out once verified; unverifiable pieces wait for the whole-file digest
    const file = Deno.openSync(partial.partPath, { read: true });
    this.#outputFile = file;
    const output = new OrderedOutput(
      file,
      meta.size,
      meta.pieceSize,
      sink,
      hashes !== undefined,
      ring,
      () => {
        // pieces written out: their ring slots are free, the sources may ask for more
        this.coordinator.handleReleased(output.released);
        this.wake.notify();
      },
    );
    this.#output = output;
  }

  /** Checks `piece` off the main thread; the answer goes back to the coordinator. */
  #verify(piece: number): void {
    this.#writer!.flush(); // the piece's last blocks may still be staged
    // a piece whose blocks were not all written must not fail its hash and get a server blamed
    const fault = this.#localFault();
    if (fault) return this.coordinator.handleLocalFault(fault);
    const partial = this.#partial!;
    this.#verifying++;
    this.#verifier!.verify(piece).then((ok) => {
      this.#verifying--;
      this.coordinator.handleVerified(piece, ok);
      if (ok) partial.recordVerified(piece);
      if (ok) this.swarm?.drive?.node.pieceVerified(piece, performance.now());
      if (ok) this.#output?.verified(piece);
      this.wake.notify();
    }, (err) => {
      this.#verifying--;
      // the .part could not be read back: a local fault, never the servers'
      this.#fatal ??= new UdpgetError(
        ExitCode.LocalIo,
        `cannot read ${partial.partPath}: ${ioMessage(err)}`,
      );
      this.wake.notify();
    });
  }

  /** Every piece is in: the whole-file digest, if the verifier computes one. */
  async #digest(): Promise<boolean> {
    const digest = await this.#verifier!.digest();
    phase("digest done");
    this.coordinator.handleDigest(digest);
    return true;
  }

  /**
   * The fetch failed. A name nobody has, typed at the prompt, is asked for again; otherwise the
   * verifications still running settle first (a kept `.part` then claims what they found).
   */
  async #failed(error: UdpgetError): Promise<boolean> {
    const prompted = this.#lines !== undefined && this.coordinator.meta === undefined;
    if (prompted && error.exitCode === ExitCode.NotFound) {
      console.error(`udpget: ${error.message}; try another name (Ctrl-D to give up)`);
      await this.#prompt();
      return true;
    }
    while (this.#verifying > 0 && !this.signal.aborted) await this.wake.wait();
    this.run.ui.stop();
    abortCheck(this.signal);
    throw error;
  }

  /** A write error, a dead receive loop or a stream's reader gone: a local fault. */
  #localFault(): UdpgetError | undefined {
    if (this.#fatal) return this.#fatal;
    // a stream's reader gone (EPIPE): nothing more can go out, so nothing more is fetched
    const failed = this.#output?.failed;
    if (failed !== undefined) {
      return failed instanceof UdpgetError
        ? failed
        : new UdpgetError(ExitCode.LocalIo, `cannot write the output: ${ioMessage(failed)}`);
    }
    const e = this.#writer?.error;
    if (e) {
      return new UdpgetError(
        ExitCode.LocalIo,
        `cannot write ${this.#partial!.partPath}: ${ioMessage(e)}`,
      );
    }
    const loop = this.endpoint.loopError ?? this.swarm?.socket.loopError;
    if (loop) return new UdpgetError(ExitCode.LocalIo, `socket failed: ${loop}`);
    const read = this.swarm?.drive?.readError;
    if (read) {
      return new UdpgetError(ExitCode.LocalIo, `cannot read ${this.#partial!.partPath}: ${read}`);
    }
    return undefined;
  }

  /** The file is complete and verified: out to the stream, or `.part` renamed to `OUT`. */
  async #complete(): Promise<void> {
    const out = this.#out!;
    if (this.#sink) {
      await this.#output!.finish();
      await this.#sink.close().catch(() => {});
      return;
    }
    const partial = this.#partial!;
    await partial.complete();
    phase("complete");
    await checkOutput(out, this.a.force);
    await Deno.rename(partial.partPath, out).catch((e) => {
      throw new UdpgetError(
        ExitCode.LocalIo,
        `cannot rename ${partial.partPath} to ${out}: ${ioMessage(e)}`,
      );
    });
  }

  /**
   * After `error`, keeps the `.part` for a resume when it holds verified pieces (and says
   * where); true when kept. Pieces an earlier run claimed and this one has not re-checked yet
   * are still claimed.
   */
  async #keep(error: unknown): Promise<boolean> {
    const partial = this.#partial;
    if (!partial || this.#sink) return false;
    const session = this.coordinator.session;
    const unchecked = session ? this.coordinator.uncheckedClaims() : partial.claimed;
    for (const p of unchecked) partial.recordVerified(p);
    const verifiedPieces = (session?.sched.verifiedPieces ?? 0) + unchecked.length;
    if (!keepAfterFailure(error, verifiedPieces)) return false;
    await partial.keep();
    const meta = this.coordinator.meta!;
    const pieceCount = session?.sched.pieceCount ?? Math.ceil(meta.size / meta.pieceSize);
    this.run.ui.say(
      `udpget: kept ${partial.partPath} (${verifiedPieces} of ${pieceCount} pieces verified; ` +
        `state in ${partial.statePath}); run the same command again to resume`,
    );
    return true;
  }
}

/** Preallocation of the `.part` where libc can be reached (`--allow-ffi`); else none. */
function spaceReserver(): SpaceReserver | undefined {
  const libc = loadLibc();
  return typeof libc === "string" ? undefined : (path, size) => reserveSpace(libc, path, size);
}

/**
 * On the batched layer, blocks are written straight from the receive slab (`pwritev`); on the
 * fallback, which uses no FFI at all, they are copied into runs and written by Deno.
 */
function blockSink(endpoint: ClientEndpoint, partial: PartialDownload): BlockSink {
  const libc = endpoint.layer === "batched" ? loadLibc() : "fallback";
  if (typeof libc === "string") return new BlockWriter(partial.file);
  try {
    return VectoredWriter.open(libc, partial.partPath);
  } catch (e) {
    throw new UdpgetError(ExitCode.LocalIo, `cannot write ${partial.partPath}: ${ioMessage(e)}`);
  }
}

/** Output names that mean standard output. */
const STDOUT_NAMES = ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"];

/** Output names that mean a standard stream or nothing (Deno opens /dev paths only with -A). */
const STREAM_NAMES = new Map<string, () => WritableStream<Uint8Array>>([
  ["-", () => Deno.stdout.writable],
  ["/dev/stdout", () => Deno.stdout.writable],
  ["/dev/fd/1", () => Deno.stdout.writable],
  ["/proc/self/fd/1", () => Deno.stdout.writable],
  ["/dev/stderr", () => Deno.stderr.writable],
  ["/dev/fd/2", () => Deno.stderr.writable],
  ["/dev/null", () => new WritableStream<Uint8Array>()],
]);

/**
 * Where a streamed output goes: standard output for `-` (and its /dev names), or an existing
 * device or pipe (e.g. a FIFO) opened for writing; undefined for a regular file (written
 * atomically through `.part`).
 */
async function openStreamTarget(
  out: string,
): Promise<WritableStreamDefaultWriter<Uint8Array> | undefined> {
  const named = STREAM_NAMES.get(out);
  if (named) return named().getWriter();
  const info = await Deno.stat(out).catch(() => undefined);
  if (!info || info.isFile || info.isDirectory) return undefined;
  try {
    return (await Deno.open(out, { write: true })).writable.getWriter();
  } catch (e) {
    throw new UdpgetError(ExitCode.LocalIo, `cannot write to ${out}: ${ioMessage(e)}`);
  }
}

/** `UDPGET_DEBUG=1` (with env access granted) prints the engine's state twice a second. */
function debugWanted(): boolean {
  const env = { name: "env", variable: "UDPGET_DEBUG" } as const;
  return Deno.permissions.querySync(env).state === "granted" && !!Deno.env.get("UDPGET_DEBUG");
}

/** A fresh random request id (unguessable by an off-path attacker). */
function randomId(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** The line printed on success: size, time, rate, verification, and each server's share. */
function summary(c: FetchCoordinator, servers: ServerAddr[], out: string, ms: number): string {
  const session = c.session!;
  const pieces = session.sched.pieceCount;
  return fetchSummary({
    out: out === "-" ? "stdout" : out,
    size: c.meta!.size,
    resumed: c.resumed,
    fetched: session.received,
    ms,
    hashWaitMs: c.hashWaitMs,
    verified: c.verification === "full"
      ? "sha256 verified"
      : `${pieces} piece${pieces === 1 ? "" : "s"} verified (SHA-256)`,
    rerequested: session.rerequested,
    sources: summarySources(c, servers),
  });
}

/** Bytes per server, and all peers as one source ("peers"). */
function summarySources(c: FetchCoordinator, servers: ServerAddr[]) {
  const out: { label: string; bytes: number }[] = [];
  let peers = 0;
  for (const r of c.session!.stats()) {
    if (c.peerOf(r.source) !== undefined) peers += r.bytes;
    else out.push({ label: servers[c.serverOf(r.source)].label, bytes: r.bytes });
  }
  if (peers > 0) out.push({ label: "peers", bytes: peers });
  return out;
}

const T0 = performance.now();
function phase(what: string): void {
  if (debugWanted()) {
    console.error(
      `debug: phase ${what} at ${(performance.now() - T0).toFixed(0)} ms (${
        performance.now().toFixed(0)
      })`,
    );
  }
}
