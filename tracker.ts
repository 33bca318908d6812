/**
 * `udpget tracker`: a BitTorrent UDP tracker (BEP 15). The shell: it opens the socket, hands
 * every datagram to the pure core (`lib/tracker/tracker_core.ts`), sends the replies, sweeps
 * expired peers on a timer, logs, and stops on SIGINT/SIGTERM.
 *
 * @module
 */

import { parseTrackerArgs, type TrackerArgs } from "./lib/cli/cli_args.ts";
import { ExitCode, ioMessage, UdpgetError } from "./lib/base/exit.ts";
import { formatServer } from "./lib/base/format.ts";
import {
  batchedUnavailable,
  describeSocket,
  type IoChoice,
  openSocket,
} from "./lib/io/udp/open_socket.ts";
import { type DatagramSocket, single } from "./lib/io/udp/datagram_socket.ts";
import type { PeerAddress } from "./lib/io/udp/peer_address.ts";
import { info, lineSink, type LogSink } from "./lib/serving/log_event.ts";
import { readKeyFile } from "./lib/wire/auth.ts";
import { MAX_REQUEST_SIZE } from "./lib/tracker/bep15_packet.ts";
import { CONNECTION_ID_KEY_SIZE } from "./lib/tracker/connection_id.ts";
import { DEFAULT_SOURCE_LIMITS } from "./lib/tracker/source_limiter.ts";
import { DEFAULT_SWARM_LIMITS, type SwarmLimits } from "./lib/tracker/swarm_table.ts";
import {
  TrackerCore,
  type TrackerCounters,
  type TrackerSource,
} from "./lib/tracker/tracker_core.ts";
import { parseWhitelist } from "./lib/tracker/whitelist.ts";

/** What the tracker needs to run. */
export interface TrackerOptions {
  /** UDP port to bind; 0 picks a free one (printed on the first line). */
  port: number;
  /** Address to bind: `0.0.0.0`, `127.0.0.1`, `::`... */
  host: string;
  /** Datagram layer (default auto: batched where FFI is allowed). */
  io?: IoChoice;
  /** Info-hashes (lowercase hex) to track; undefined: any. */
  whitelist?: ReadonlySet<string>;
  /** Shared key: announces and scrapes must carry the authentication option. */
  key?: Uint8Array;
  /** Requests per second per source address; 0: no limit (default 100). */
  sourceRate?: number;
  /** Caps and intervals (default `DEFAULT_SWARM_LIMITS`). */
  swarmLimits?: SwarmLimits;
  /** Where log events go. */
  log: LogSink;
  /** Stops the tracker when aborted. */
  signal: AbortSignal;
  /**
   * Called once with the bound address, the socket and the core (to replace the whitelist),
   * before the first datagram is read.
   */
  onListening?: (addr: Deno.NetAddr, sock: DatagramSocket, core: TrackerCore) => void;
  /** How often a line of counters is logged when there was traffic (ms; default 60 s). */
  reportEveryMs?: number;
}

/** The tracker's counters, and the replies the socket failed to send. */
export interface TrackerStats extends TrackerCounters {
  sendErrors: number;
}

/** Expired peers are swept this often (ms): a vanished peer is handed out at most this late. */
const SWEEP_MS = 5_000;

/** Runs a tracker until `o.signal` aborts; resolves with its counters. */
export async function runTrackerServer(o: TrackerOptions): Promise<TrackerStats> {
  const sock = openSocket(o.io ?? "auto", {
    hostname: o.host,
    port: o.port,
    maxDatagram: MAX_REQUEST_SIZE,
  });
  const rate = o.sourceRate ?? DEFAULT_SOURCE_LIMITS.rate;
  const core = new TrackerCore({
    idKey: crypto.getRandomValues(new Uint8Array(CONNECTION_ID_KEY_SIZE)),
    authKey: o.key,
    whitelist: o.whitelist,
    swarmLimits: o.swarmLimits,
    sourceLimits: { ...DEFAULT_SOURCE_LIMITS, rate, burst: 2 * rate },
  });
  let sendErrors = 0;
  o.onListening?.(sock.localAddr, sock, core);
  const stop = () => sock.close();
  o.signal.addEventListener("abort", stop, { once: true });
  if (o.signal.aborted) stop();
  const sweep = setInterval(() => core.tick(Date.now()), SWEEP_MS);
  const reporter = new Reporter(core, o.log);
  const report = setInterval(() => reporter.report(), o.reportEveryMs ?? 60_000);
  try {
    for await (const b of sock.batches()) {
      core.counters.oversized += b.dropped; // cut short by the layer: larger than any request
      core.counters.datagrams += b.dropped;
      for (let i = 0; i < b.count; i++) {
        const peer = b.peer(i);
        if (!peer) continue; // not IPv4 or IPv6: nothing to answer
        const at = b.offsets[i];
        const reply = core.handle(
          b.data.subarray(at, at + b.lengths[i]),
          sourceOf(peer),
          Date.now(),
        );
        // a failed send (the client's port is gone) is only counted
        if (reply && (await sock.send(peer, single(reply))) !== undefined) sendErrors++;
      }
    }
  } finally {
    clearInterval(sweep);
    clearInterval(report);
    o.signal.removeEventListener("abort", stop);
    sock.close();
  }
  return { ...core.counters, sendErrors };
}

/** The address bytes of `peer`, from the `sockaddr` the layers keep (no text parsing). */
function sourceOf(peer: PeerAddress): TrackerSource {
  const sa = peer.sockaddr;
  const address = peer.family === "ipv4" ? sa.subarray(4, 8) : sa.subarray(8, 24);
  return { address, port: peer.port };
}

/** Logs a line of counters per period in which something happened. */
class Reporter {
  #core: TrackerCore;
  #log: LogSink;
  #last: TrackerCounters;

  constructor(core: TrackerCore, log: LogSink) {
    this.#core = core;
    this.#log = log;
    this.#last = { ...core.counters };
  }

  /** Logs what changed since the last line, if anything did. */
  report(): void {
    const c = this.#core.counters;
    if (c.datagrams === this.#last.datagrams) return;
    const d = (k: keyof TrackerCounters) => c[k] - this.#last[k];
    const t = this.#core.swarms;
    const dropped = d("malformed") + d("oversized") + d("rateLimited") + d("badConnectionId");
    this.#log(info(
      "tracker_stats",
      `${t.swarmCount} swarms, ${t.peerCount} peers (${t.seederCount} seeders); since the ` +
        `last line: ${d("announces")} announces, ${d("scrapes")} scrapes, ` +
        `${d("connects")} connects, ${d("errors")} errors sent, ${dropped} dropped ` +
        `(${d("malformed")} malformed, ${d("badConnectionId")} bad connection id, ` +
        `${d("rateLimited")} rate-limited, ${d("oversized")} oversized)`,
    ));
    this.#last = { ...c };
  }
}

/** Reads and checks `--whitelist FILE` (usage errors, exit 2). */
async function readWhitelist(path: string): Promise<ReadonlySet<string>> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new UdpgetError(ExitCode.Usage, `cannot read whitelist ${path}: ${ioMessage(e)}`);
  }
  const w = parseWhitelist(text);
  if (!w.ok) {
    const where = w.line > 0 ? `${path}:${w.line}` : path;
    throw new UdpgetError(ExitCode.Usage, `whitelist ${where}: ${w.message}`);
  }
  return w.hashes;
}

/** The first line: where it listens, what it enforces, and on which datagram layer. */
function listeningLine(
  addr: Deno.NetAddr,
  a: TrackerArgs,
  whitelist: ReadonlySet<string> | undefined,
  layer: string,
): string {
  const l = DEFAULT_SWARM_LIMITS;
  const rules = [
    `announce every ${l.downloadingIntervalS} s while downloading, ${l.seededIntervalS} s seeded`,
    whitelist ? `whitelist of ${whitelist.size} info-hashes` : "any info-hash",
    ...(a.secretFile ? ["authenticated requests only"] : []),
    a.sourceRate > 0 ? `at most ${a.sourceRate} requests/s per address` : "no rate limit",
    a.peersPerAddress > 0
      ? `${a.peersPerAddress} peers per address in a swarm`
      : "no per-address peer limit",
    `datagram I/O: ${layer}`,
  ];
  return `udpget tracker: listening on udp ${formatServer(addr.hostname, addr.port)} ` +
    `(BEP 15; ${rules.join("; ")})`;
}

/**
 * `udpget tracker <port> [--host ADDR] ...`: tracks swarms until SIGINT/SIGTERM; SIGHUP reads
 * `--whitelist` again.
 */
export async function runTracker(args: string[]): Promise<number> {
  const a = parseTrackerArgs(args);
  const whitelist = a.whitelist === undefined ? undefined : await readWhitelist(a.whitelist);
  const key = a.secretFile === undefined ? undefined : await readKeyFile(a.secretFile);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const log = lineSink("text", (line) => console.log(line));
  let core: TrackerCore | undefined;
  // SIGHUP reads the whitelist again, as opentracker does: a new info-hash needs no restart
  // (which would forget every swarm); a file that fails to read or parse keeps the old list.
  // Without --whitelist, SIGHUP is left alone (it ends the tracker, as for any program).
  let reloads = 0;
  const onHangUp = () => {
    if (a.whitelist === undefined || !core) return;
    const c = core;
    const mine = ++reloads;
    readWhitelist(a.whitelist).then((w) => {
      if (mine !== reloads) return; // a later SIGHUP's reading wins, whichever ends first
      c.setWhitelist(w);
      log(info("whitelist_reloaded", `whitelist reloaded: ${w.size} info-hashes`));
    }, (e) => {
      log({
        level: "warn",
        event: "whitelist_reload_failed",
        msg: `${e instanceof Error ? e.message : String(e)}; the whitelist loaded before stays`,
      });
    });
  };
  if (a.whitelist !== undefined) Deno.addSignalListener("SIGHUP", onHangUp);
  try {
    const stats = await runTrackerServer({
      ...a,
      swarmLimits: { ...DEFAULT_SWARM_LIMITS, maxPeersPerAddress: a.peersPerAddress },
      whitelist,
      key,
      log,
      signal: stop.signal,
      onListening: (addr, sock, c) => {
        core = c;
        const layer = describeSocket(sock, batchedUnavailable(a.io));
        console.log(listeningLine(addr, a, whitelist, layer));
      },
    }).catch((e) => {
      // a batched layer demanded where it cannot be had is a usage error, as for serve
      const code = a.io === "ffi" && /--io ffi/.test(e.message) ? ExitCode.Usage : ExitCode.LocalIo;
      throw new UdpgetError(code, `tracker: cannot listen on ${a.host}:${a.port}: ${ioMessage(e)}`);
    });
    const dropped = stats.malformed + stats.oversized + stats.rateLimited + stats.badConnectionId;
    const t = core?.swarms;
    log(info(
      "stopped",
      `stopped: ${stats.announces} announces, ${stats.scrapes} scrapes, ${stats.connects} ` +
        `connects, ${stats.errors} errors sent, ${dropped} datagrams dropped ` +
        `(${stats.malformed} malformed, ${stats.badConnectionId} bad connection id, ` +
        `${stats.rateLimited} rate-limited, ${stats.oversized} oversized); ` +
        `${stats.swarmsFull} announces refused as the swarm table was full; ` +
        `held ${t?.swarmCount ?? 0} swarms, ${t?.peerCount ?? 0} peers`,
    ));
    return ExitCode.Ok;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    if (a.whitelist !== undefined) Deno.removeSignalListener("SIGHUP", onHangUp);
  }
}
