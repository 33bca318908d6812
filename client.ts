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
import { basename, dirname, join } from "node:path";
import { type FetchArgs, parseFetchArgs } from "./lib/cli/cli_args.ts";
import {
  chooseMeta,
  type FileMeta,
  type MetaAnswer,
  sameVersion,
  settledMeta,
  toHex,
} from "./lib/engine/consensus.ts";
import { ClientEndpoint, type ServerAddr } from "./lib/io/endpoint.ts";
import { ExitCode, ioMessage, UdpgetError } from "./lib/base/exit.ts";
import { RateWindow, renderProgress } from "./lib/cli/progress.ts";
import { StatusLine } from "./lib/cli/status_line.ts";
import {
  type FetchReport,
  formatReport,
  type IoReport,
  type ServerReport,
  type ServerStatus,
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
import { FetchSession, type SessionEvent } from "./lib/engine/fetch_session.ts";
import { type PieceFilter } from "./lib/engine/scheduler.ts";
import { MetaDiscovery } from "./lib/engine/meta_discovery.ts";
import { HashListFetch } from "./lib/engine/hash_list_fetch.ts";
import type { RequestMachine } from "./lib/engine/retry_schedule.ts";
import {
  blockForMtu,
  BlockProbe,
  type PathFamily,
  pathProbeSizes,
} from "./lib/engine/block_probe.ts";
import { encode, errorCodeName, fileIdOf } from "./lib/wire/packet.ts";
import { parseServerList, type ServerSpec } from "./lib/cli/servers.ts";
import { formatServer } from "./lib/base/format.ts";
import { fetchSummary } from "./lib/cli/fetch_summary.ts";
import { withTimeout } from "./lib/io/timer.ts";

/** `udpget fetch ...`: resolves with the exit status. */
export async function runFetch(args: string[]): Promise<number> {
  const started = performance.now();
  const a = parseFetchArgs(args);
  const run = new FetchRun(started, a);
  try {
    await fetchFile(a, run);
    if (a.json) printLine(formatReport(run.report(undefined)));
    return ExitCode.Ok;
  } catch (e) {
    run.ui.stop();
    if (a.json) printLine(formatReport(run.report(e)));
    throw e;
  }
}

async function fetchFile(a: FetchArgs, run: FetchRun): Promise<void> {
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
  try {
    phase("start");
    const { name, meta, chosen, pending } = await chooseFile(
      endpoint,
      servers,
      a,
      run,
      stop.signal,
    );
    const out = await outputPath(a.output, name);
    run.file = name;
    run.output = out;
    run.meta = meta;
    await checkOutput(out, a.force, true);
    await download(endpoint, servers, { name, meta, chosen, pending }, out, a, run, stop.signal);
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await endpoint.shutdown();
  }
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
  meta: FileMeta | undefined;
  blockSize: number | undefined;
  verification: "pieces" | "full" | undefined;
  download: Download | undefined;
  /** Time spent waiting for servers to hash the file (they answered BUSY). */
  hashWaitMs = 0;
  /** The datagram layer in use. */
  io: IoReport | undefined;

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
    const d = this.download;
    for (const st of d?.session.stats() ?? []) {
      const s = this.servers[d!.servers[st.source]];
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
      size: this.meta?.size ?? null,
      sha256: this.meta ? toHex(this.meta.digest) : null,
      seconds: (performance.now() - this.started) / 1000,
      hashWaitSeconds: this.hashWaitMs / 1000,
      bytes: {
        fetched: d?.session.received ?? 0,
        resumed: d?.resumed ?? 0,
        rerequested: d?.session.rerequested ?? 0,
      },
      blockSize: this.blockSize ?? null,
      verification: this.verification ?? null,
      servers: this.servers,
      io: this.io ?? null,
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

/** The file chosen, its agreed metadata, and the indices of the servers that agree on it. */
interface Chosen {
  name: string;
  meta: FileMeta;
  chosen: number[];
  /** Discovery, if some servers had not answered yet when the version was settled. */
  pending?: MetaDiscovery;
}

/** A request machine running beside the transfer, and what to do as it progresses. */
interface SideMachine {
  m: RequestMachine;
  /** After a reply or a timeout was handled. */
  onProgress?: () => void;
  /** Once it is done. */
  onDone: () => void;
}

/** Asks about `a.file`, or prompts on a terminal until some server has the named file. */
async function chooseFile(
  endpoint: ClientEndpoint,
  servers: ServerAddr[],
  a: FetchArgs,
  run: FetchRun,
  signal: AbortSignal,
): Promise<Chosen> {
  const keyed = a.secretFile !== undefined;
  if (a.file !== undefined) {
    return await discover(endpoint, servers, a.file, run, signal, a.checksum, keyed);
  }
  if (!Deno.stdin.isTerminal()) {
    throw new UdpgetError(ExitCode.Usage, "missing <file> (and stdin is not a terminal to ask)");
  }
  const lines = new LineReader(Deno.stdin);
  for (;;) {
    const name = (await promptLine("File to fetch: ", lines, signal))?.trim();
    if (name === undefined) {
      throw new UdpgetError(ExitCode.Usage, "no file name given (end of input at the prompt)");
    }
    run.started = performance.now(); // the time the user took to type is not the fetch's
    if (name === "") continue;
    try {
      return await discover(endpoint, servers, name, run, signal, a.checksum, keyed);
    } catch (e) {
      if (!(e instanceof UdpgetError) || e.exitCode !== ExitCode.NotFound) throw e;
      console.error(`udpget: ${e.message}; try another name (Ctrl-D to give up)`);
    }
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

/** META_REQUEST to every server at once; picks the metadata the majority agrees on. */
async function discover(
  endpoint: ClientEndpoint,
  servers: ServerAddr[],
  name: string,
  run: FetchRun,
  signal: AbortSignal,
  trusted?: Uint8Array,
  keyed = false,
): Promise<Chosen> {
  const discovery = new MetaDiscovery(name, servers.length, performance.now(), randomId);
  // servers hashing a big file on its first request answer BUSY meanwhile: show their progress
  run.ui.status((width) => {
    const busy = discovery.busy();
    if (busy.length === 0) return "";
    const progress = busy.map(parseBusyProgress).filter((p) => p !== undefined);
    const done = progress.reduce((t, p) => t + p.done, 0);
    const total = progress.reduce((t, p) => t + p.total, 0);
    return renderProgress({
      phase: "hashing",
      name,
      busy: busy.length,
      servers: servers.length,
      done: progress.length > 0 ? done : undefined,
      total: progress.length > 0 ? total : undefined,
      elapsedMs: performance.now() - (discovery.firstBusyAt ?? performance.now()),
    }, width);
  });
  // the transfer starts once the answers so far decide the version (a strict majority of all
  // servers); those still being asked (a lost datagram costs a timeout) join it when they answer
  const settled = () => settledMeta(discovery.partial(), trusted, keyed);
  try {
    await runMachine(endpoint, discovery, signal, () => settled() !== undefined);
  } finally {
    run.ui.stop();
    if (discovery.firstBusyAt !== undefined) {
      run.hashWaitMs += performance.now() - discovery.firstBusyAt;
    }
  }
  abortCheck(signal);
  const partial = discovery.partial();
  partial.forEach((ans, i) => {
    if (ans) noteAnswer(endpoint, discovery, run, servers[i].label, i, ans, false);
  });
  sayUnanswered(run, servers.map((s) => s.label), partial);
  const answers = discovery.answers();
  const c = settled() ?? chooseMeta(answers, trusted, keyed);
  if (!c.ok) {
    if (c.reason === "auth") {
      const why = keyed
        ? "the key of --secret-file is refused (or the servers do not use one)"
        : "the servers require --secret-file";
      throw new UdpgetError(ExitCode.AuthFailed, `authentication failed: ${why}`);
    }
    if (c.reason === "silent") {
      const causes = new Set(answers.map((a) => a.kind === "silent" ? silence(a) : ""));
      const why = causes.size === 1 ? `: ${[...causes][0]}` : "";
      throw new UdpgetError(ExitCode.Unreachable, `no server answered${why}`);
    }
    if (c.reason === "tie") {
      answers.forEach((ans, i) => {
        if (ans.kind === "meta") run.ui.say(`udpget: ${servers[i].label}: ${version(ans.meta)}`);
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
    run.setServer(i, "left_out", `another version (${version(m)})`);
    leaveOut(run, servers[i].label, i, m);
  }
  return { name, meta: c.meta, chosen: c.servers, pending: discovery.done ? undefined : discovery };
}

/** Takes in a server's answer to the metadata request: its token, round trip and status. */
function noteAnswer(
  endpoint: ClientEndpoint,
  discovery: MetaDiscovery,
  run: FetchRun,
  label: string,
  i: number,
  ans: MetaAnswer,
  saySilent = true,
): void {
  endpoint.setToken(i, discovery.token(i));
  const rtt = discovery.rtt(i);
  if (rtt !== undefined) endpoint.noteRtt(i, rtt);
  if (ans.kind === "error") {
    const reason = `${errorCodeName(ans.code)}: ${ans.message}`;
    run.setServer(i, "refused", reason);
    run.ui.say(`udpget: ${label}: ${reason}`);
  } else if (ans.kind === "silent") {
    run.setServer(i, "silent", silence(ans));
    if (saySilent) run.ui.say(`udpget: ${label}: ${silence(ans)}`);
  } else run.setServer(i, "used", null);
}

/** Why a server said nothing: what the network reported, else "no answer". */
function silence(ans: { unreachable?: string }): string {
  return ans.unreachable?.toLowerCase() ?? "no answer";
}

/**
 * One line for the servers that did not answer discovery (with 50 listed and 47 dead, one line
 * and not 47), grouped by cause, naming the first few.
 */
function sayUnanswered(run: FetchRun, labels: string[], answers: (MetaAnswer | undefined)[]) {
  const byCause = new Map<string, string[]>();
  answers.forEach((ans, i) => {
    if (ans?.kind !== "silent") return;
    const cause = silence(ans);
    byCause.set(cause, [...(byCause.get(cause) ?? []), labels[i]]);
  });
  for (const [cause, names] of byCause) {
    if (names.length === 1) {
      run.ui.say(`udpget: ${names[0]}: ${cause}`);
      continue;
    }
    const shown = names.slice(0, 3).join(", ");
    const more = names.length > 3 ? ` and ${names.length - 3} more` : "";
    run.ui.say(`udpget: ${names.length} servers, ${cause}: ${shown}${more}`);
  }
}

function leaveOut(run: FetchRun, label: string, i: number, m: FileMeta): void {
  run.setServer(i, "left_out", `another version (${version(m)})`);
  run.ui.say(`udpget: ${label}: left out, it has another version (${version(m)})`);
}

/**
 * Discovery still asking some servers when the transfer started: each that answers with the
 * chosen version joins the transfer as a new source; the others are reported.
 */
function lateJoiners(d: Download, run: FetchRun, discovery: MetaDiscovery): SideMachine {
  const settled = new Set<number>();
  discovery.partial().forEach((a, i) => a && settled.add(i));
  const take = () => {
    discovery.partial().forEach((ans, i) => {
      if (!ans || settled.has(i)) return;
      settled.add(i);
      noteAnswer(d.endpoint, discovery, run, d.labels[i], i, ans);
      if (ans.kind !== "meta") return;
      if (sameVersion(ans.meta, d.meta)) d.addServer(i);
      else leaveOut(run, d.labels[i], i, ans.meta);
    });
  };
  return { m: discovery, onProgress: take, onDone: take };
}

function version(m: FileMeta): string {
  return `${m.size} bytes, sha256 ${toHex(m.digest).slice(0, 16)}…`;
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
// The transfer

/** State of one download, shared by the drive loop, the progress line and the summary. */
class Download {
  /** The engine: which blocks to ask whom for, pacing, losses, congestion, server health. */
  readonly session: FetchSession;
  /** Source index in the session → server index in the servers file. */
  readonly servers: number[];
  /** Server index → source index (−1: not a source). */
  #sources: number[] = [];
  /** Received blocks go into the `.part` through it, in runs. */
  readonly writer: BlockSink;
  /** Wakes the drive loop: a datagram arrived, a piece was verified, the user interrupted. */
  readonly wake = new Notifier();
  verifier: PieceVerifier | undefined;
  /** Resolves with the verifier once the piece hashes are in (or known to be unavailable). */
  verifierReady!: Promise<PieceVerifier>;
  /** An error that ends the transfer, found off the drive loop (a stream without hashes). */
  fatal: unknown;
  /** Whether piece hashes were established. */
  hashes = false;
  /** A request machine running beside the transfer (the hash list), and what to do when done. */
  sides: SideMachine[] = [];
  /** What the final check established, for the summary line. */
  verified = "";
  /** Bytes of pieces verified by an earlier run, not fetched again. */
  resumed = 0;
  /** Pieces being verified right now. */
  verifying = 0;
  /** Streamed output (`-o -`): verified pieces in order, read from the `.part` by this handle. */
  output: OrderedOutput | undefined;
  outputFile: Deno.FsFile | undefined;

  constructor(
    readonly endpoint: ClientEndpoint,
    readonly partial: PartialDownload,
    readonly name: string,
    readonly meta: FileMeta,
    readonly blockSize: number,
    readonly labels: string[],
    chosen: number[],
    limit: number | undefined,
    maxInflight: number | undefined,
    maxRequest: number | undefined,
    /** Pieces the `.part` holds (a stream's ring, see `piece_ring.ts`); 0: the whole file. */
    readonly ring = 0,
  ) {
    this.servers = chosen;
    const sink = blockSink(endpoint, partial);
    this.writer = ring > 0 ? new RingSink(sink, meta.pieceSize, ring) : sink;
    chosen.forEach((server, source) => this.#sources[server] = source);
    const now = performance.now();
    this.session = new FetchSession({
      size: meta.size,
      pieceSize: meta.pieceSize,
      blockSize,
      fileId: fileIdOf(meta.digest),
      name,
      nextRequestId: () => crypto.getRandomValues(new Uint32Array(1))[0],
      limitBytesPerSec: limit,
      maxInflightPerSource: maxInflight,
      maxRequestBytes: maxRequest,
      lanes: endpoint.workers,
      lanMinWindowBytes: lanWindow(endpoint, blockSize),
    }, now);
    chosen.forEach((server, source) => {
      this.session.addSource(source, now, this.#inRing, endpoint.rttOf(server));
      this.session.setToken(source, endpoint.token(server));
    });
  }

  /**
   * Pieces that may be fetched now: all of them, or for a stream only those whose ring slot is
   * free (the reorder buffer: the write point plus `ring` pieces).
   */
  #inRing: PieceFilter = (piece) =>
    this.ring === 0 || piece < (this.output?.released ?? 0) + this.ring;

  /** A stream wrote pieces out: their slots are free, the sources may ask for more. */
  released(): void {
    for (let source = 0; source < this.servers.length; source++) this.session.sourceHas(source);
    this.wake.notify();
  }

  get received(): number {
    return this.resumed + this.session.received;
  }

  /** The session's source index of server `server`, or −1. */
  sourceOf(server: number): number {
    return this.#sources[server] ?? -1;
  }

  /** Server `server` (index in the servers file) joins the transfer as a new source. */
  addServer(server: number): void {
    const source = this.servers.length;
    this.servers.push(server);
    this.#sources[server] = source;
    this.session.addSource(source, performance.now(), this.#inRing, this.endpoint.rttOf(server));
    this.session.setToken(source, this.endpoint.token(server));
  }
}

/**
 * On the batched layer, blocks are written straight from the receive slab (`pwritev`); on the
 * fallback, which uses no FFI at all, they are copied into runs and written by Deno.
 */
/** Preallocation of the `.part` where libc can be reached (`--allow-ffi`); else none. */
function spaceReserver(): SpaceReserver | undefined {
  const libc = loadLibc();
  return typeof libc === "string" ? undefined : (path, size) => reserveSpace(libc, path, size);
}

function blockSink(endpoint: ClientEndpoint, partial: PartialDownload): BlockSink {
  const libc = endpoint.layer === "batched" ? loadLibc() : "fallback";
  if (typeof libc === "string") return new BlockWriter(partial.file);
  try {
    return VectoredWriter.open(libc, partial.partPath);
  } catch (e) {
    throw new UdpgetError(ExitCode.LocalIo, `cannot write ${partial.partPath}: ${ioMessage(e)}`);
  }
}

/**
 * Datagrams of `blockSize` one socket's receive buffer can hold (`rcvbuf` as the kernel reports
 * it: 208 KiB by default, what the batched layer raised it to otherwise). The kernel charges
 * each datagram roughly twice its size plus ~1.5 KiB of bookkeeping (skb truesize), and admits
 * one more once under the limit; measured on loopback with the default buffer: 2 × 65000 B,
 * 4–5 × 32 KiB, 11 × 8 KiB, ~90 × 1400 B.
 */
export function laneDatagrams(blockSize: number, rcvbuf = 212992): number {
  return Math.max(2, Math.min(4096, Math.floor(rcvbuf / (2 * (blockSize + 1536))) + 1));
}

/**
 * The window floor of a LAN path (see `lanMinWindowBytes`): half of what one server's receive
 * sockets hold, between 128 KiB and 4 MiB. On the fallback layer's 208 KiB sockets a larger
 * window overflowed them (5 % and more re-requested on a veth LAN); on the batched layer's
 * 8 MiB sockets the 4 MiB cap is what keeps batches flowing without a standing queue.
 */
function lanWindow(endpoint: ClientEndpoint, blockSize: number): number {
  const lanes = endpoint.workers * laneDatagrams(blockSize, endpoint.receiveBuffer) * blockSize;
  return Math.max(128 << 10, Math.min(4 << 20, lanes / 2));
}

/** Whether every server is on this machine: no path MTU, the bottleneck is the receiver. */
export function allLoopback(servers: ServerAddr[]): boolean {
  return servers.every((s) => s.hostname.startsWith("127.") || s.hostname === "::1");
}

/** Largest block that fits one Ethernet frame without IP fragmentation (RFC 8085 §3.2). */
export function mtuSafeBlock(family: PathFamily): number {
  return blockForMtu(1500, family);
}

async function download(
  endpoint: ClientEndpoint,
  servers: ServerAddr[],
  { name, meta, chosen, pending }: Chosen,
  out: string,
  a: FetchArgs,
  run: FetchRun,
  signal: AbortSignal,
): Promise<void> {
  const using = chosen.map((i) => servers[i]);
  const loopback = allLoopback(using);
  const blockSize = a.blockSize !== "auto"
    ? Math.min(a.blockSize, meta.maxBlock)
    : await probeBlockSize(endpoint, chosen, name, meta, signal, loopback ? undefined : using);
  run.blockSize = blockSize;
  abortCheck(signal);
  const sink = await openStreamTarget(out);
  // streamed: the .part lives in a private temporary directory (nothing to resume from there)
  const tmp = sink ? await Deno.makeTempDir({ prefix: "udpget-" }) : undefined;
  const partOut = tmp ? join(tmp, basename(name) || "file") : out;
  // nothing can throw between opening the .part and the try that keeps or discards it
  const say = (l: string) => run.ui.say(l);
  // a stream verified piece by piece needs only its reorder buffer on disk, not the file
  const pieceCount = Math.ceil(meta.size / meta.pieceSize);
  const ring = sink && a.verify !== "full" && a.checksum === undefined
    ? streamRingPieces(meta.pieceSize, pieceCount)
    : 0;
  const capacity = ring > 0 ? Math.min(meta.size, ring * meta.pieceSize) : meta.size;
  let partial: PartialDownload;
  try {
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
  // on loopback the receiver's socket buffers are the bottleneck queue: stay within them
  const laneBytes = laneDatagrams(blockSize, endpoint.receiveBuffer) * blockSize;
  const maxInflight = loopback ? endpoint.workers * laneBytes : undefined;
  // and one request must not fill a socket's buffer by itself
  const maxRequest = loopback ? Math.max(blockSize, laneBytes / 2) : undefined;
  const d = new Download(
    endpoint,
    partial,
    name,
    meta,
    blockSize,
    servers.map((s) => s.label),
    chosen,
    a.limit,
    maxInflight,
    maxRequest,
    ring,
  );
  run.download = d;
  if (pending) d.sides.push(lateJoiners(d, run, pending));
  let ok = false;
  let kept = false;
  try {
    await transfer(d, a, run, sink, signal);
    if (sink) {
      await d.output!.finish();
      await sink.close().catch(() => {});
    } else {
      await partial.complete();
      phase("complete");
      await checkOutput(out, a.force);
      await Deno.rename(partial.partPath, out).catch((e) => {
        throw new UdpgetError(
          ExitCode.LocalIo,
          `cannot rename ${partial.partPath} to ${out}: ${ioMessage(e)}`,
        );
      });
    }
    ok = true;
    phase("summary");
    run.ui.say(summary(d, out, performance.now() - run.started, run.hashWaitMs));
  } catch (e) {
    const verifiedPieces = d.session.sched.verifiedPieces;
    if (!sink && keepAfterFailure(e, verifiedPieces)) {
      kept = true;
      await partial.keep();
      run.ui.say(
        `udpget: kept ${partial.partPath} (${verifiedPieces} of ` +
          `${d.session.sched.pieceCount} pieces verified; state in ${partial.statePath}); ` +
          `run the same command again to resume`,
      );
    }
    throw e;
  } finally {
    endpoint.routeOthers(undefined);
    run.ui.stop();
    d.writer.close();
    d.verifier?.close();
    d.outputFile?.close();
    if (!ok && !kept) await partial.discard();
    if (tmp) await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Hash list, resume re-check, the transfer and the final check, with the progress line. */
async function transfer(
  d: Download,
  a: FetchArgs,
  run: FetchRun,
  sink: WritableStreamDefaultWriter<Uint8Array> | undefined,
  signal: AbortSignal,
): Promise<void> {
  const { meta, partial, endpoint } = d;
  const rate = new RateWindow();
  run.ui.status((width) => {
    const now = performance.now();
    rate.sample(now, d.session.received);
    return renderProgress({
      phase: "transfer",
      name: d.name,
      total: meta.size,
      fetched: d.session.received,
      resumed: d.resumed,
      rate: rate.rate(),
      alive: d.session.alive,
      servers: run.servers.length, // as listed: "2/3" says one of three is not helping
    }, width);
  });
  const onAbort = () => d.wake.notify();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    phase("meta");
    // the hash list is only needed to verify pieces: the transfer starts while it is fetched
    // (a resume waits for it, to re-check the pieces it claims before fetching the others)
    const hashFetch = hashListFetch(d);
    d.verifierReady = new Promise<Uint8Array | undefined>((resolve) => {
      d.sides.push({
        m: hashFetch,
        onDone: () => resolve(checkedHashes(d, run, hashFetch.result())),
      });
    }).then((hashes) => {
      phase("hashes");
      // without piece hashes, only a full pass can vouch for the file
      const whole = a.verify === "full" || !hashes || a.checksum !== undefined;
      if (whole && d.ring > 0) {
        // (every udpget server publishes piece hashes: a server that does not is not one)
        throw new UdpgetError(
          ExitCode.Verification,
          "no trusted piece hashes (the hash list could not be had or did not match its root): " +
            "a stream cannot be verified piece by piece; use -o FILE",
        );
      }
      d.verifier = openPieceVerifier(
        { path: partial.partPath, size: meta.size, pieceSize: meta.pieceSize, ring: d.ring },
        hashes,
        whole,
      );
      const pieces = d.session.sched.pieceCount;
      d.verified = whole
        ? "sha256 verified"
        : `${pieces} piece${pieces === 1 ? "" : "s"} verified (SHA-256)`;
      run.verification = whole ? "full" : "pieces";
      d.hashes = hashes !== undefined;
      if (sink) {
        // a piece goes out once verified; unverifiable pieces wait for the whole-file digest
        d.outputFile = Deno.openSync(partial.partPath, { read: true });
        d.output = new OrderedOutput(
          d.outputFile,
          meta.size,
          meta.pieceSize,
          sink,
          d.hashes,
          d.ring,
          () => d.released(),
        );
      }
      return d.verifier;
    });
    d.verifierReady.catch((e) => {
      d.fatal ??= e;
      d.wake.notify();
    });
    if (partial.claimed.length > 0) {
      await runMachine(endpoint, hashFetch, signal);
      settleSides(d);
      await d.verifierReady;
      await recheckClaimed(d, run);
    }
    await drive(d, run, signal);
    phase("drive");
    run.ui.stop();
    abortCheck(signal);
    if (!d.session.sched.done) {
      const stats = d.session.stats();
      const why = stats.map((s) => `${d.labels[d.servers[s.source]]}: ${s.dropReason ?? "?"}`);
      throw new UdpgetError(ExitCode.Unreachable, `every server failed (${why.join("; ")})`);
    }
    // (every piece verified: the verifier exists; an empty file has no hashes to wait for)
    const verifier = await d.verifierReady;
    const digest = await verifier.digest();
    phase("digest");
    if (verifier.whole && (!digest || toHex(digest) !== toHex(meta.digest))) {
      throw new UdpgetError(
        ExitCode.Verification,
        `verification failed: sha256 ${digest ? toHex(digest) : "?"} != expected ` +
          toHex(meta.digest),
      );
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
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

/**
 * The shell around the engine: replies go in as they arrive (new blocks are written at once),
 * requests go out as the engine releases them, and between the two the loop sleeps until the
 * next datagram, verification or engine timer (`Promise.race` in `withTimeout`).
 */
async function drive(d: Download, run: FetchRun, signal: AbortSignal): Promise<void> {
  const { session, endpoint } = d;
  const writer = d.writer;
  endpoint.routeOthers((server, p) => {
    for (const side of d.sides) {
      if (!side.m.handleReply(performance.now(), server, p)) continue;
      side.onProgress?.();
      return d.wake.notify();
    }
    const source = d.sourceOf(server);
    if (source < 0) return;
    const now = performance.now();
    const w = session.handleReply(now, source, p);
    if (w) writer.stage(w.offset, w.data, 0, w.data.length);
    writer.flush();
    if (session.wantsService(now)) d.wake.notify();
  });
  // data goes straight to the engine (the side machines never ask for chunks), written in runs
  endpoint.routeChunks((now, server, h, data) => {
    const source = d.sourceOf(server);
    if (source < 0) return;
    if (session.handleBlock(now, source, h)) {
      writer.stage(h.offset, data, h.dataAt, h.dataLen);
    }
  }, () => {
    // the batched layer's writer points into the receive slab, reused after this batch; the
    // copying writer flushes when a run breaks, its buffer fills, or before verification
    if (writer.holdsViews) writer.flush();
    // the loop runs when there is something to do; its own timer covers pacing and deadlines
    if (writer.error || session.wantsService(performance.now())) d.wake.notify();
  });
  const layer = () => JSON.stringify(endpoint.layerStats());
  const debug = debugWanted()
    ? setInterval(() => {
      const st = session.stats().map((x) =>
        `${x.source}:${x.alive ? "" : "dead "}${x.state} b=${x.bytes}`
      );
      console.error(`debug: ${session.received} ${session.sched.verifiedPieces} ${st.join(" | ")}`);
    }, 500)
    : undefined;
  // a server gone mid-transfer: its port answers ICMP refused (batched layer only)
  endpoint.onSoftError((server, error) => {
    const now = performance.now();
    const source = d.sourceOf(server);
    if (source >= 0) session.handleUnreachable(now, source, error);
    // (discovery still asking late servers: a refused one is answered at once there too)
    for (const side of d.sides) side.m.handleUnreachable?.(now, server, error);
    d.wake.notify();
  });
  try {
    await driveLoop(d, run, signal);
  } finally {
    endpoint.onSoftError(undefined);
    endpoint.routeChunks(undefined);
    clearInterval(debug);
    if (debugWanted()) {
      console.error(
        `debug: layer ${layer()}, writes ${d.writer.writes}, sent ${endpoint.stats.sent}`,
      );
    }
  }
}

/** Ends the side machines that are done. */
function settleSides(d: Download): void {
  const done = d.sides.filter((s) => s.m.done);
  if (done.length === 0) return;
  d.sides = d.sides.filter((s) => !s.m.done);
  for (const s of done) s.onDone();
}

/** `UDPGET_DEBUG=1` (with env access granted) prints the engine's state twice a second. */
function debugWanted(): boolean {
  const env = { name: "env", variable: "UDPGET_DEBUG" } as const;
  return Deno.permissions.querySync(env).state === "granted" && !!Deno.env.get("UDPGET_DEBUG");
}

async function driveLoop(d: Download, run: FetchRun, signal: AbortSignal): Promise<void> {
  const { session, endpoint } = d;
  while (!session.ended && !signal.aborted) {
    localFailure(d);
    const now = performance.now();
    for (const side of d.sides) {
      serviceMachine(endpoint, side.m, now);
      side.onProgress?.(); // (a timeout may have settled something)
    }
    settleSides(d);
    session.handleTimeout(now);
    for (let t = session.pollTransmit(now); t; t = session.pollTransmit(now)) {
      // each lane is a worker socket with its own receive buffer
      const bytes = encode(t.packet);
      for (let c = 0; c < t.copies; c++) void endpoint.send(t.lane, d.servers[t.source], bytes);
    }
    for (let e = session.poll(); e; e = session.poll()) onEvent(d, run, e);
    if (session.ended) break;
    const side = Math.min(...d.sides.map((s) => s.m.pollTimeout() ?? Infinity));
    const next = Math.min(session.pollTimeout(performance.now()) ?? Infinity, side);
    const wait = next === Infinity ? 1000 : Math.max(0, next - performance.now());
    await withTimeout(d.wake.wait(), wait);
  }
  // what ended the session (the last source dropped, from a reply) is still said and recorded:
  // the report must not call a server "used" that the error line says failed
  for (let e = session.poll(); e; e = session.poll()) onEvent(d, run, e);
  // answers that came in with the last blocks still count (a late server's version is reported)
  for (const side of d.sides) side.onProgress?.();
  settleSides(d);
  // a verification still running when the last block arrived settles the finish
  while (d.verifying > 0 && !signal.aborted) await d.wake.wait();
}

/** A write error or a dead receive loop ends the transfer as what it is: a local fault. */
function localFailure(d: Download): void {
  if (d.fatal) throw d.fatal;
  // a stream's reader gone (EPIPE): nothing more can go out, so nothing more is fetched
  if (d.output?.failed) throw d.output.failed;
  const e = d.writer.error;
  if (e) {
    throw new UdpgetError(ExitCode.LocalIo, `cannot write ${d.partial.partPath}: ${ioMessage(e)}`);
  }
  const loop = d.endpoint.loopError;
  if (loop) throw new UdpgetError(ExitCode.LocalIo, `socket failed: ${loop}`);
}

function onEvent(d: Download, run: FetchRun, e: SessionEvent): void {
  const label = (source: number) => d.labels[d.servers[source]];
  switch (e.kind) {
    case "verify":
      d.writer.flush(); // the piece's last blocks may still be staged
      localFailure(d);
      d.verifying++;
      d.verifierReady.then((v) => v.verify(e.piece)).then((ok) => {
        d.verifying--;
        d.session.handleVerified(e.piece, ok);
        if (ok) d.partial.recordVerified(e.piece);
        if (ok) d.output?.verified(e.piece);
        d.wake.notify();
      }, (err) => {
        d.verifying--;
        // no verifier (`fatal` already says why), or the .part could not be read back: a local
        // fault, never the servers'
        d.fatal ??= new UdpgetError(
          ExitCode.LocalIo,
          `cannot read ${d.partial.partPath}: ${ioMessage(err)}`,
        );
        d.wake.notify();
      });
      return;
    case "corrupt":
      run.ui.say(`udpget: piece ${e.piece} failed its SHA-256; fetching it again`);
      return;
    case "dropped":
      run.setServer(d.servers[e.source], "dropped", e.reason);
      run.ui.say(`udpget: ${label(e.source)}: dropped (${e.reason})`);
      return;
  }
}

/**
 * Re-checks the pieces an earlier run recorded as verified against their hashes (the `.part`
 * may have been torn by a crash or edited since); those that pass are not fetched again.
 */
async function recheckClaimed(d: Download, run: FetchRun): Promise<void> {
  const claimed = d.partial.claimed;
  const out = run.output;
  if (claimed.length === 0) return;
  if (!d.hashes) {
    // claims that cannot be checked piece by piece are not trusted: fetch everything again
    run.ui.say(
      `udpget: ${out}: no piece hashes to re-check the partial download; starting over`,
    );
    return;
  }
  const verifier = await d.verifierReady;
  const oks = await Promise.all(claimed.map((p) => verifier.verify(p)));
  const sched = d.session.sched;
  claimed.forEach((p, i) => {
    if (!oks[i]) return;
    d.session.markVerified(p);
    d.partial.recordVerified(p);
    const [start, end] = sched.pieceRange(p);
    d.resumed += end - start;
  });
  const kept = sched.verifiedPieces;
  const bad = claimed.length - kept;
  run.ui.say(
    `udpget: resuming ${out}: ${kept} of ${sched.pieceCount} pieces already verified` +
      (bad === 1 ? ", 1 failed its re-check and will be fetched again" : "") +
      (bad > 1 ? `, ${bad} failed their re-check and will be fetched again` : ""),
  );
}

/** The hash-list machine for this download (see `lib/engine/hash_list_fetch.ts`). */
function hashListFetch(d: Download): HashListFetch {
  return new HashListFetch({
    fileId: fileIdOf(d.meta.digest),
    name: d.name,
    pieceCount: d.session.sched.pieceCount,
    blockSize: d.blockSize,
    servers: d.servers,
    token: (server) => d.endpoint.token(server),
    rtt: (server) => d.endpoint.rttOf(server),
    nextRequestId: randomId,
  });
}

/** The fetched hash list if it matches the agreed `piecesRoot`, else undefined. */
function checkedHashes(
  d: Download,
  run: FetchRun,
  hashes: Uint8Array | undefined,
): Uint8Array | undefined {
  if (hashes === undefined) return undefined;
  if (toHex(sha256(hashes)) !== toHex(d.meta.piecesRoot)) {
    run.ui.say("udpget: piece hash list does not match the agreed root; using the file digest");
    return undefined;
  }
  return hashes;
}

/** A fresh random request id (unguessable by an off-path attacker). */
function randomId(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/** Drives one request machine alone (before the transfer) until it is done or aborted. */
async function runMachine(
  endpoint: ClientEndpoint,
  m: RequestMachine,
  signal: AbortSignal,
  enough: () => boolean = () => false,
): Promise<void> {
  const wake = new Notifier();
  const onAbort = () => wake.notify();
  signal.addEventListener("abort", onAbort, { once: true });
  endpoint.routeOthers((server, p) => {
    if (m.handleReply(performance.now(), server, p)) wake.notify();
  });
  endpoint.onSoftError((server, error) => {
    if (m.handleUnreachable?.(performance.now(), server, error)) wake.notify();
  });
  try {
    while (!m.done && !enough() && !signal.aborted) {
      serviceMachine(endpoint, m, performance.now());
      if (m.done || enough()) break;
      const next = m.pollTimeout();
      await withTimeout(wake.wait(), next === undefined ? 1000 : next - performance.now());
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    endpoint.routeOthers(undefined);
    endpoint.onSoftError(undefined);
  }
}

/** Timers and sends of a request machine at `now`. */
function serviceMachine(endpoint: ClientEndpoint, m: RequestMachine, now: number): void {
  m.handleTimeout(now);
  for (let t = m.pollTransmit(now); t; t = m.pollTransmit(now)) {
    void endpoint.send(0, t.server, encode(t.packet));
  }
}

/**
 * `--block-size auto`: the largest block every chosen server answers in full. Off loopback
 * (`paths` given) the probes step through path MTUs and must arrive unfragmented; a server that
 * cannot send them gets one Ethernet frame's worth, never relying on fragmentation.
 */
async function probeBlockSize(
  endpoint: ClientEndpoint,
  chosen: number[],
  name: string,
  meta: FileMeta,
  signal: AbortSignal,
  paths?: ServerAddr[],
): Promise<number> {
  const families = [...new Set(paths?.map((s) => s.family))];
  const probe = new BlockProbe({
    ...(paths && {
      sizes: pathProbeSizes(families),
      unfragmented: { fallback: Math.min(...families.map(mtuSafeBlock)) },
    }),
    fileId: fileIdOf(meta.digest),
    name,
    size: meta.size,
    maxBlock: meta.maxBlock,
    servers: chosen,
    token: (server) => endpoint.token(server),
    rtt: (server) => endpoint.rttOf(server),
    nextRequestId: randomId,
  });
  await runMachine(endpoint, probe, signal);
  return probe.result();
}

/** The line printed on success: size, time, rate, verification, and each server's share. */
function summary(d: Download, out: string, ms: number, hashWaitMs: number): string {
  return fetchSummary({
    out: out === "-" ? "stdout" : out,
    size: d.meta.size,
    resumed: d.resumed,
    fetched: d.session.received,
    ms,
    hashWaitMs,
    verified: d.verified,
    rerequested: d.session.rerequested,
    sources: d.session.stats().map((r) => ({
      label: d.labels[d.servers[r.source]],
      bytes: r.bytes,
    })),
  });
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
