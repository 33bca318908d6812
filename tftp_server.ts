/**
 * `udpget serve --tftp <port>`: the TFTP side of the server (read requests only). This is the
 * shell around `lib/tftp/`: it moves datagrams between sockets, files and the pure pieces
 * (codec, option negotiation, admission, the per-transfer state machine), and owns nothing the
 * protocol decides.
 *
 * One socket listens on the TFTP port for requests; every admitted transfer gets its own socket
 * on an ephemeral port (its TID, RFC 1350), its own file handle and a receive loop. Names are
 * resolved by the same `FileTable` as the udpget protocol (root confinement, regular files only,
 * no symlink out). Errors for requests that open no transfer (missing file, traversal, write
 * requests, limits) go out from the listening socket, never larger than 3× the request.
 *
 * Hot path (one ACK in, one DATA out in lock-step): the ACK is read without decoding, the block
 * comes from a read-ahead buffer filled synchronously, the DATA is built in a reused slot and sent
 * at once; the retransmission timer is only re-armed when it fires.
 *
 * @module
 */

import { FileTable } from "./lib/serving/file_table.ts";
import { ErrorCode } from "./lib/wire/packet.ts";
import { DEFAULT_PIECE_SIZE } from "./lib/io/file_digest.ts";
import { AMPLIFICATION_FACTOR } from "./lib/serving/serve_policy.ts";
import { formatServer } from "./lib/base/format.ts";
import { ExitCode, ioMessage, UdpgetError } from "./lib/base/exit.ts";
import { decode, encodeError, encodeOack, Opcode, TftpErrorCode } from "./lib/tftp/tftp_packet.ts";
import { negotiate, parseMode, type TransferMode } from "./lib/tftp/tftp_options.ts";
import { type FileReader, NetasciiSource, OctetSource } from "./lib/tftp/block_source.ts";
import { TftpTransfer, type TransferEnd, type TransferOutput } from "./lib/tftp/tftp_transfer.ts";
import { TftpAdmission } from "./lib/tftp/tftp_limits.ts";
import { BusyPoll } from "./lib/tftp/busy_poll.ts";
import { datagrams } from "./lib/io/datagrams.ts";

/** What the TFTP server needs to run. */
export interface TftpServeOptions {
  /** UDP port for requests (69 is the standard one); 0 picks a free port. */
  port: number;
  /** Address to bind, for the listening socket and every transfer's socket. */
  host: string;
  /** Directory whose regular files are served. */
  root: string;
  /** Where log lines go (one per transfer from a proven address). */
  log: (line: string) => void;
  /** Stops the server when aborted. */
  signal: AbortSignal;
  /** Called whenever an admitted request ends, started or not (for tests and metrics). */
  onTransferEnd?: (e: TftpTransferEnd) => void;
}

/** A transfer that ended, as reported to `onTransferEnd`. */
export interface TftpTransferEnd {
  /** The file name requested. */
  name: string;
  /** The client's TID, `host:port`. */
  client: string;
  /** True when the last block was acknowledged. */
  ok: boolean;
  /** Why it failed (when not `ok`). */
  reason?: string;
  /** False when it never started (the file could not be served: an ERROR was sent). */
  started: boolean;
  /** Whether the client ever acknowledged anything. */
  proven: boolean;
  /** Data bytes sent (each block once). */
  bytes: number;
}

/** Counters of a TFTP server. */
export interface TftpStats {
  /** Datagrams received on the listening port. */
  datagrams: number;
  /** Read requests (duplicates included). */
  requests: number;
  /** Datagrams that did not decode. */
  malformed: number;
  /** Write requests (refused with ERROR 2). */
  writeRequests: number;
  /** Read requests refused by the limits (answered or silently dropped). */
  refused: number;
  /** Transfers started (a socket was opened for them). */
  transfers: number;
  /** Transfers whose last block was acknowledged. */
  completed: number;
  /** Transfers that ended otherwise (client gone, client error, read error, stop). */
  failed: number;
  /** File bytes sent (each block counted once). */
  bytesSent: number;
  /** Datagrams sent again. */
  retransmits: number;
  /** Datagrams that could not be sent. */
  sendErrors: number;
  /** Datagrams received on a transfer's port from another address or port (dropped). */
  foreignTid: number;
  /** Most transfers at once. */
  peakTransfers: number;
  /** Requests admitted and not ended yet (opening or transferring). */
  active: number;
}

/** A running TFTP server. */
export interface TftpServer {
  /** The bound address of the listening socket. */
  addr: Deno.NetAddr;
  /** Live counters. */
  stats: TftpStats;
  /** Resolves with the counters once the server has stopped (after `signal` aborted). */
  done: Promise<TftpStats>;
}

/** Largest request read; longer datagrams are truncated, so their last field is unterminated. */
const REQUEST_BUFFER = 2048;

/** Receive buffer of a transfer's socket: ACKs are 4 bytes, ERRORs short. */
const TRANSFER_BUFFER = 1024;

/**
 * Binds the TFTP port and serves read requests from `opts.root` until `opts.signal` aborts.
 * Throws if the port cannot be bound or the root is not a directory.
 */
export async function startTftp(opts: TftpServeOptions): Promise<TftpServer> {
  const realRoot = await Deno.realPath(opts.root);
  if (!(await Deno.stat(realRoot)).isDirectory) throw new Error(`${opts.root} is not a directory`);
  const listener = Deno.listenDatagram({ port: opts.port, hostname: opts.host, transport: "udp" });
  const server = new TftpShell(listener, new FileTable(realRoot, DEFAULT_PIECE_SIZE), opts);
  const stop = () => server.stop();
  opts.signal.addEventListener("abort", stop, { once: true });
  if (opts.signal.aborted) stop();
  const done = server.run()
    .catch((e) => {
      opts.log(`tftp: listening socket failed: ${e instanceof Error ? e.message : String(e)}`);
      return server.stats;
    })
    .finally(() => opts.signal.removeEventListener("abort", stop));
  return { addr: listener.addr as Deno.NetAddr, stats: server.stats, done };
}

/** One transfer as the shell sees it: its TID, socket, file, timer and state machine. */
interface Session {
  key: string;
  ip: string;
  port: number;
  to: Deno.NetAddr;
  name: string;
  mode: TransferMode;
  started: number;
  transfer?: TftpTransfer;
  sock?: Deno.DatagramConn;
  file?: Deno.FsFile;
  blksize: number;
  windowsize: number;
  timer?: ReturnType<typeof setTimeout>;
  timerAt: number;
  flushing: boolean;
  waiters: (() => void)[];
  proven: boolean;
  ended: boolean;
}

class TftpShell {
  readonly stats: TftpStats = {
    datagrams: 0,
    requests: 0,
    malformed: 0,
    writeRequests: 0,
    refused: 0,
    transfers: 0,
    completed: 0,
    failed: 0,
    bytesSent: 0,
    retransmits: 0,
    sendErrors: 0,
    foreignTid: 0,
    peakTransfers: 0,
    active: 0,
  };
  #listener: Deno.DatagramConn;
  #files: FileTable;
  #opts: TftpServeOptions;
  #admission = new TftpAdmission();
  /** Live transfers by client TID (`ip port`). */
  #sessions = new Map<string, Session>();
  /** Each session's task (open, first send, receive loop), awaited at shutdown. */
  #tasks = new Set<Promise<void>>();
  #stopped = false;
  #onSendError = () => {
    this.stats.sendErrors++;
  };

  constructor(listener: Deno.DatagramConn, files: FileTable, opts: TftpServeOptions) {
    this.#listener = listener;
    this.#files = files;
    this.#opts = opts;
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
  }

  async run(): Promise<TftpStats> {
    try {
      // datagrams() reuses one buffer: each request is decoded before the next is read
      for await (const [data, from] of datagrams(this.#listener, REQUEST_BUFFER)) {
        this.stats.datagrams++;
        try {
          this.#onRequest(data, from);
        } catch (e) {
          this.#opts.log(`tftp: internal error: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    } finally {
      this.#stopped = true;
      for (const s of [...this.#sessions.values()]) {
        this.#finish(s, { ok: false, reason: "server stopped" });
      }
      await Promise.allSettled(this.#tasks); // their sockets are closed: they end at once
      this.#files.close();
    }
    return this.stats;
  }

  /** A datagram on the listening port. Synchronous until the file is opened. */
  #onRequest(data: Uint8Array, from: Deno.NetAddr): void {
    const r = decode(data);
    if (!r.ok) {
      this.stats.malformed++;
      // a request we could not read gets a short answer; anything else (a reply) none at all
      if (r.opcode === Opcode.Rrq || r.opcode === Opcode.Wrq) {
        this.#refuse(from, data.length, TftpErrorCode.IllegalOperation, `malformed request`);
      }
      return;
    }
    const p = r.packet;
    if (p.op === "wrq") {
      this.stats.writeRequests++;
      return this.#refuse(from, data.length, TftpErrorCode.AccessViolation, "read-only server");
    }
    if (p.op !== "rrq") return void this.stats.malformed++; // never answer a reply
    this.stats.requests++;
    const mode = parseMode(p.mode);
    if (!mode) {
      return this.#refuse(from, data.length, TftpErrorCode.IllegalOperation, "unsupported mode");
    }
    const key = `${from.hostname} ${from.port}`;
    const old = this.#sessions.get(key);
    if (old) {
      const t = old.transfer;
      if (!t) return; // still opening: a repeated request
      if (old.name === p.filename && !t.proven) {
        // the client did not get our first datagram and asks again: resend it (capped)
        if (!old.flushing) this.#run(old, t.onRequestRepeated(performance.now()));
        return;
      }
      if (old.name === p.filename && !t.sentAll) return; // a late duplicate of the request
      // the same TID asks anew: the old transfer is over (its final ACK was lost) or abandoned
      this.#finish(old, t.sentAll ? { ok: true } : { ok: false, reason: "superseded" });
    }
    const refusal = this.#admission.admit(from.hostname);
    if (refusal) {
      this.stats.refused++;
      if (!refusal.silent) {
        this.#refuse(from, data.length, TftpErrorCode.NotDefined, refusal.message);
      }
      return;
    }
    const s: Session = {
      key,
      ip: from.hostname,
      port: from.port,
      to: { transport: "udp", hostname: from.hostname, port: from.port },
      name: p.filename,
      mode,
      started: performance.now(),
      blksize: 0,
      windowsize: 0,
      timerAt: Infinity,
      flushing: false,
      waiters: [],
      proven: false,
      ended: false,
    };
    this.#sessions.set(key, s);
    this.stats.active++;
    this.stats.peakTransfers = Math.max(this.stats.peakTransfers, this.#admission.total);
    const task = this.#open(s, data.length, p.options).catch((e) => {
      this.#opts.log(`tftp: error serving ${this.#who(s)}: ${(e as Error).message}`);
      this.#finish(s, { ok: false, reason: "internal error" });
    });
    this.#tasks.add(task);
    task.finally(() => this.#tasks.delete(task));
  }

  /** Resolves and opens the file, negotiates, opens the transfer's socket, sends the first packet. */
  async #open(s: Session, requestLen: number, options: { name: string; value: string }[]) {
    let f;
    try {
      f = await this.#files.open(s.name);
    } catch {
      f = { code: ErrorCode.AccessDenied, message: "cannot open file" };
    }
    if (s.ended) return;
    if ("code" in f) {
      const code = f.code === ErrorCode.NotFound
        ? TftpErrorCode.FileNotFound
        : TftpErrorCode.AccessViolation;
      this.#refuse(
        s.to,
        requestLen,
        code,
        f.code === ErrorCode.NotFound ? "file not found" : f.message,
      );
      return this.#finish(s, { ok: false, reason: "refused" }, false);
    }
    // our own handle: the table's handles are shared and closed when it evicts them
    let file: Deno.FsFile;
    let info: Deno.FileInfo;
    try {
      file = await Deno.open(f.realPath, { read: true });
      info = file.statSync();
    } catch {
      this.#refuse(s.to, requestLen, TftpErrorCode.AccessViolation, "cannot open file");
      return this.#finish(s, { ok: false, reason: "refused" }, false);
    }
    if (s.ended || this.#stopped || !info.isFile || info.ino !== f.ino) {
      file.close();
      if (!s.ended) {
        this.#refuse(s.to, requestLen, TftpErrorCode.AccessViolation, "file changed");
        this.#finish(s, { ok: false, reason: "refused" }, false);
      }
      return;
    }
    s.file = file;
    const n = negotiate(options, s.mode, info.size);
    const reader: FileReader = { readAt: (buf, offset) => readFully(file, buf, offset) };
    const source = s.mode === "octet"
      ? new OctetSource(reader, info.size, n.blksize)
      : new NetasciiSource(reader, info.size, n.blksize);
    s.blksize = n.blksize;
    s.windowsize = n.windowsize;
    s.sock = Deno.listenDatagram({ hostname: this.#opts.host, port: 0, transport: "udp" });
    s.transfer = new TftpTransfer({
      blksize: n.blksize,
      windowsize: n.windowsize,
      timeoutMs: n.timeoutMs,
      oack: n.accepted.length > 0 ? encodeOack(n.accepted) : undefined,
    }, source);
    this.stats.transfers++;
    await this.#flush(s, s.transfer.start(performance.now()));
    await this.#receive(s, s.sock, s.transfer);
  }

  /** The transfer's receive loop: datagrams from the client's TID go to the state machine. */
  async #receive(s: Session, sock: Deno.DatagramConn, t: TftpTransfer): Promise<void> {
    const buf = new Uint8Array(TRANSFER_BUFFER);
    const poll = new BusyPoll();
    while (!s.ended) {
      // a lone lock-step transfer may busy-poll for the ACK (see busy_poll.ts); with others
      // running, the event loop is theirs too and nobody spins
      const lone = s.windowsize === 1 && s.proven && this.#sessions.size === 1;
      const spun = lone ? poll.next() : 0;
      if (spun > 0) spinFor(spun);
      const asked = lone ? performance.now() : 0;
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await sock.receive(buf);
      } catch {
        break; // closed when the transfer ended
      }
      const now = performance.now();
      if (lone) poll.record(now, spun, (now - asked) * 1000);
      const from = got[1] as Deno.NetAddr;
      if (from.port !== s.port || from.hostname !== s.ip) {
        this.stats.foreignTid++; // RFC 1350: not this transfer's peer; dropped, never answered
        continue;
      }
      if (s.flushing) await new Promise<void>((r) => s.waiters.push(r));
      if (s.ended) break;
      const out = t.onDatagram(got[0], now);
      if (out.sends.length === 1 && out.end === undefined && s.proven) {
        // The lock-step hot path, inlined: one DATA out, not awaited, the timer only checked.
        // Safe without the await: sends run on this thread between JS turns, so one still
        // waiting for the socket can at worst carry a later (complete, correctly numbered)
        // block that reused its slot, never a torn one.
        sock.send(out.sends[0], s.to).catch(this.#onSendError);
        this.#arm(s, out.timerAt);
        continue;
      }
      await this.#flush(s, out);
    }
    if (!s.ended) this.#finish(s, { ok: false, reason: "socket failed" });
  }

  /** Runs `#flush` from a callback (timer, repeated request), logging what it throws. */
  #run(s: Session, out: TransferOutput): void {
    this.#flush(s, out).catch((e) => {
      this.#opts.log(`tftp: error serving ${this.#who(s)}: ${(e as Error).message}`);
      this.#finish(s, { ok: false, reason: "internal error" });
    });
  }

  /**
   * Carries out a state machine output: sends its datagrams one after the other (each awaited:
   * a window goes out in order, and the transfer handles nothing else until it is out, which is
   * backpressure when the socket buffer is full), then arms the timer or ends the transfer. Only
   * one flush runs at a time per transfer.
   */
  async #flush(s: Session, out: TransferOutput): Promise<void> {
    const sock = s.sock!;
    const t = s.transfer!;
    s.flushing = true;
    try {
      for (let i = 0; i < out.sends.length; i++) {
        try {
          await sock.send(out.sends[i], s.to);
        } catch {
          this.stats.sendErrors++;
          if (s.ended) break;
        }
      }
    } finally {
      s.flushing = false;
      if (s.waiters.length > 0) { for (const w of s.waiters.splice(0)) w(); }
    }
    if (s.ended) return;
    if (!s.proven && t.proven) {
      s.proven = true;
      this.#admission.prove(s.ip);
    }
    if (out.end) return this.#finish(s, out.end);
    this.#arm(s, out.timerAt);
  }

  /**
   * Makes sure a timer fires by `at`. The deadline moves forward at every ACK; the timer is not
   * moved with it (that would cost a timer per block): when it fires early, the state machine
   * answers with the current deadline and it is armed again.
   */
  #arm(s: Session, at: number): void {
    if (at === Infinity) return;
    if (at - performance.now() < 1) {
      // due within a millisecond (the next burst of a window): after this turn of the event
      // loop, not a timer's whole millisecond later
      setImmediateTurn(() => {
        if (s.ended || !s.transfer || s.flushing) return;
        this.#run(s, s.transfer.onTimer(performance.now()));
      });
      return;
    }
    if (s.timer !== undefined && s.timerAt <= at) return;
    if (s.timer !== undefined) clearTimeout(s.timer);
    s.timerAt = at;
    s.timer = setTimeout(() => {
      s.timer = undefined;
      s.timerAt = Infinity;
      if (s.ended || !s.transfer) return;
      if (s.flushing) return; // the running flush re-arms with the current deadline
      this.#run(s, s.transfer.onTimer(performance.now()));
    }, Math.max(0, Math.ceil(at - performance.now())));
  }

  /** Ends a transfer: closes its socket and file, releases its admission, logs it. */
  #finish(s: Session, end: TransferEnd, started = true): void {
    if (s.ended) return;
    s.ended = true;
    if (s.timer !== undefined) clearTimeout(s.timer);
    s.timer = undefined;
    try {
      s.sock?.close();
    } catch { /* closed */ }
    try {
      s.file?.close();
    } catch { /* closed */ }
    for (const w of s.waiters.splice(0)) w();
    if (this.#sessions.get(s.key) === s) this.#sessions.delete(s.key);
    this.#admission.release(s.ip, s.proven);
    this.stats.active--;
    const st = s.transfer?.stats;
    this.#opts.onTransferEnd?.({
      name: s.name,
      client: this.#who(s),
      ok: end.ok,
      reason: end.ok ? undefined : end.reason,
      started,
      proven: s.proven,
      bytes: st?.bytes ?? 0,
    });
    if (!started) return;
    if (st) {
      this.stats.bytesSent += st.bytes;
      this.stats.retransmits += st.retransmits;
    }
    if (end.ok) this.stats.completed++;
    else this.stats.failed++;
    // transfers that never got an ACK are only counted: their address may be forged
    if (!s.proven || !st) return;
    const secs = ((performance.now() - s.started) / 1000).toFixed(3);
    const what = `${st.bytes} bytes in ${st.blocks} blocks of ${s.blksize} B, window ` +
      `${s.windowsize}, ${s.mode}, ${st.retransmits} resent (${st.losses} windows lost, ${st.timeouts} timed out), ${secs} s`;
    this.#opts.log(
      end.ok
        ? `tftp: sent ${JSON.stringify(s.name)} to ${this.#who(s)}: ${what}`
        : `tftp: ${JSON.stringify(s.name)} to ${this.#who(s)} failed (${end.reason}): ${what}`,
    );
  }

  /** An ERROR from the listening port, no larger than `AMPLIFICATION_FACTOR` × the request. */
  #refuse(to: Deno.NetAddr, requestLen: number, code: number, message: string): void {
    const room = AMPLIFICATION_FACTOR * requestLen - 5; // 4-byte header and the NUL
    if (room < 0) return;
    this.#listener.send(encodeError(code, message, room), to).catch(() => {
      this.stats.sendErrors++;
    });
  }

  #who(s: Session): string {
    return formatServer(s.ip, s.port);
  }
}

/** Keeps the CPU busy, without sleeping, for `us` microseconds. */
function spinFor(us: number): void {
  const until = performance.now() + us / 1000;
  while (performance.now() < until) { /* busy */ }
}

/** Fills `buf` from `offset` of `file`, synchronously; false if the file ended or a read failed. */
function readFully(file: Deno.FsFile, buf: Uint8Array, offset: number): boolean {
  try {
    file.seekSync(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = file.readSync(buf.subarray(got));
      if (n === null || n === 0) return false;
      got += n;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * For `udpget serve --tftp PORT`: starts the TFTP server beside the udpget one (same root and
 * host), prints where it listens, and turns a bind failure into a usage-level error. The
 * returned server's `done` resolves once `signal` aborts.
 */
export async function startTftpForServe(
  a: { tftp?: number; host: string; root: string },
  log: (line: string) => void,
  signal: AbortSignal,
): Promise<TftpServer | undefined> {
  if (a.tftp === undefined) return undefined;
  const server = await startTftp({ port: a.tftp, host: a.host, root: a.root, log, signal })
    .catch((e) => {
      throw new UdpgetError(
        ExitCode.LocalIo,
        `cannot listen for TFTP on ${formatServer(a.host, a.tftp!)}: ${ioMessage(e)}`,
      );
    });
  return server;
}

/** The line that says where TFTP listens (printed right after `serve`'s listening line). */
export function tftpListeningLine(server: TftpServer): string {
  return `udpget: TFTP read requests on ${formatServer(server.addr.hostname, server.addr.port)}`;
}

/** The last log line of a TFTP server: its totals. */
export function describeTftpStats(s: TftpStats): string {
  return `tftp stopped: ${s.transfers} transfers (${s.completed} completed, ${s.failed} failed), ` +
    `${s.bytesSent} bytes sent, ${s.requests} read requests, ${s.refused} refused, ` +
    `${s.writeRequests} write requests, ${s.malformed} malformed datagrams`;
}

/** Runs `fn` after the current turn of the event loop (a MessageChannel round trip). */
function setImmediateTurn(fn: () => void): void {
  const ch = new MessageChannel();
  ch.port1.onmessage = () => {
    ch.port1.close();
    fn();
  };
  ch.port2.postMessage(0);
}
