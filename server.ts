/**
 * `udpget serve`: answers metadata, hash and chunk requests for the regular files under one
 * root directory, read-only. Moves bytes between the socket and files; what to answer is
 * decided by `lib/serve_policy.ts`.
 *
 * @module
 */

import { DuplicateFilter, requestKey } from "./lib/serving/duplicate_filter.ts";
import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkRequest,
  encode,
  ErrorCode,
  type HashesRequest,
  MAX_BLOCK_SIZE,
  MAX_DATAGRAM_SIZE,
  type MetaRequest,
  type Packet,
  writeChunkReplyHeader,
} from "./lib/wire/packet.ts";
import { FileTable, type PrehashSummary, type ServedFile } from "./lib/serving/file_table.ts";
import { checkChunkRequest, hashesReplyCount } from "./lib/serving/serve_policy.ts";
import { TransferLog } from "./lib/serving/transfer_log.ts";
import type { RefusalLimits } from "./lib/serving/refusal_limiter.ts";
import { RefusalLog } from "./lib/serving/refusal_log.ts";
import { info, lineSink, type LogSink } from "./lib/serving/log_event.ts";
import { defaultCacheDir, DigestCache } from "./lib/serving/digest_cache.ts";
import { listRoot } from "./lib/serving/root_walk.ts";
import type { DigestFn } from "./lib/io/file_digest.ts";
import { formatServer } from "./lib/cli/servers.ts";
import { describeTftpStats, startTftpForServe } from "./tftp_server.ts";
import { parseServeArgs } from "./lib/cli/cli_args.ts";
import { ExitCode, UdpgetError } from "./lib/cli/exit.ts";
import { resolve } from "node:path";
import { TokenBucket } from "./lib/engine/token_bucket.ts";
import { sleep } from "./lib/io/timer.ts";
import { datagrams } from "./lib/io/datagrams.ts";
import { CookieJar } from "./lib/wire/cookie.ts";
import { RequestGate } from "./lib/serving/request_gate.ts";
import { readKeyFile, RequestAuthenticator } from "./lib/wire/auth.ts";

/** What `serve` needs to run. */
export interface ServeOptions {
  /** UDP port to bind; 0 picks a free one (printed on the first line). */
  port: number;
  /** Address to bind: `0.0.0.0` (default), `127.0.0.1`, `::`... */
  host: string;
  /** Directory whose regular files are served. */
  root: string;
  /** Piece size used for piece hashes. */
  pieceSize: number;
  /** Bytes per second to send at most (all clients together); undefined: no cap. */
  rate?: number;
  /** Shared key: when set, only requests authenticated with it are answered. */
  key?: Uint8Array;
  /** Where log events go. */
  log: LogSink;
  /** Stops the server when aborted. */
  signal: AbortSignal;
  /** Called once with the bound address, before the first datagram is read. */
  onListening?: (addr: Deno.NetAddr) => void;
  /** Persistent digest cache directory; undefined: none (digests live as long as the process). */
  cacheDir?: string;
  /** Hash the files under the root in the background from the start (default true). */
  prehash?: boolean;
  /** Called when the background pass over the root has finished. */
  onPrehashed?: (summary: PrehashSummary) => void;
  /** Computes digests (default `digestFile`); tests inject slow or counting ones. */
  digestFn?: DigestFn;
  /** Limits on refusal log lines (default `DEFAULT_REFUSAL_LIMITS`). */
  refusalLimits?: RefusalLimits;
}

/** Counters a server keeps about its traffic. */
export interface ServeStats {
  datagrams: number;
  malformed: number;
  requests: number;
  /** Requests answered with RETRY because their address was not validated yet. */
  retries: number;
  bytesSent: number;
  sendErrors: number;
  /** Chunk requests refused by the per-client and server-wide transfer limits. */
  refused: number;
  /** Most transfers tracked at once (bounded by MAX_OPEN_TRANSFERS). */
  peakTransfers: number;
  /** Datagrams refused by `--secret-file` authentication. */
  authFailed: number;
  /** Copies of a request already answered (a client's second copy, or the network's). */
  duplicates: number;
}

/** Runs a server until `opts.signal` aborts; resolves with its counters. */
export async function serve(opts: ServeOptions): Promise<ServeStats> {
  const realRoot = await Deno.realPath(opts.root);
  if (!(await Deno.stat(realRoot)).isDirectory) throw new Error(`${opts.root} is not a directory`);
  const sock = Deno.listenDatagram({ port: opts.port, hostname: opts.host, transport: "udp" });
  const limiter = opts.rate === undefined ? undefined : new TokenBucket(
    opts.rate,
    Math.max(opts.rate / 100, 2 * MAX_DATAGRAM_SIZE),
    performance.now(),
  );
  const auth = opts.key ? new RequestAuthenticator(opts.key) : undefined;
  let cache: DigestCache | undefined;
  if (opts.cacheDir !== undefined) {
    const c = await DigestCache.open(opts.cacheDir, realRoot);
    if (typeof c === "string") {
      opts.log({ level: "warn", event: "cache_disabled", msg: `digest cache disabled: ${c}` });
    } else cache = c;
  }
  const files = new FileTable(realRoot, opts.pieceSize, {
    digestFn: opts.digestFn,
    cache,
    log: opts.log,
  });
  const server = new UdpServer(sock, files, opts.log, limiter, auth, opts.refusalLimits);
  opts.onListening?.(sock.addr as Deno.NetAddr);
  const stop = () => sock.close();
  opts.signal.addEventListener("abort", stop, { once: true });
  const background = opts.prehash === false
    ? undefined
    : prehashRoot(files, realRoot, opts.log, opts.signal).then((s) => opts.onPrehashed?.(s));
  try {
    await server.run();
  } finally {
    opts.signal.removeEventListener("abort", stop);
    server.close();
    // digest jobs stop at their next read once the table is closed: this waits milliseconds
    await background;
    await files.drain();
  }
  return server.stats;
}

/**
 * Hashes the servable files under the root ahead of their first request, one at a time,
 * after loading whatever the persistent cache holds. Never throws.
 */
async function prehashRoot(
  files: FileTable,
  realRoot: string,
  log: LogSink,
  signal: AbortSignal,
): Promise<PrehashSummary> {
  const listing = await listRoot(realRoot, undefined, signal);
  log({
    level: "info",
    event: "prehash_start",
    msg: `background hashing: ${listing.names.length} files` +
      (listing.truncated ? " (the walk stopped there; others are hashed on request)" : ""),
    fields: { files: listing.names.length, truncated: listing.truncated },
  });
  const s = await files.prehash(listing.names, signal);
  const secs = (s.ms / 1000).toFixed(3);
  log({
    level: "info",
    event: "prehash_done",
    msg: `background hashing done in ${secs} s: ${s.fromCache} from cache, ${s.hashed} hashed, ` +
      `${s.failed} skipped`,
    fields: {
      files: s.files,
      from_cache: s.fromCache,
      hashed: s.hashed,
      skipped: s.failed,
      seconds: Number(secs),
    },
  });
  return s;
}

type Request = MetaRequest | HashesRequest | ChunkRequest;

class UdpServer {
  readonly stats: ServeStats = {
    datagrams: 0,
    malformed: 0,
    requests: 0,
    retries: 0,
    bytesSent: 0,
    sendErrors: 0,
    refused: 0,
    peakTransfers: 0,
    authFailed: 0,
    duplicates: 0,
  };
  #duplicates = new DuplicateFilter();
  #sock: Deno.DatagramConn;
  #files: FileTable;
  #transfers: TransferLog;
  #sendBuf = new Uint8Array(MAX_DATAGRAM_SIZE);
  #sweep: ReturnType<typeof setInterval>;
  #limiter: TokenBucket | undefined;
  #gate: RequestGate;
  #refusals: RefusalLog;

  constructor(
    sock: Deno.DatagramConn,
    files: FileTable,
    log: LogSink,
    limiter: TokenBucket | undefined,
    auth: RequestAuthenticator | undefined,
    refusalLimits: RefusalLimits | undefined,
  ) {
    this.#sock = sock;
    this.#gate = new RequestGate(new CookieJar(crypto.getRandomValues(new Uint8Array(32))), auth);
    this.#limiter = limiter;
    this.#files = files;
    this.#transfers = new TransferLog(log);
    this.#refusals = new RefusalLog(log, refusalLimits);
    this.#sweep = setInterval(() => {
      const now = Date.now();
      this.#transfers.sweep(now);
      this.#refusals.tick(now);
    }, 1000);
  }

  async run(): Promise<void> {
    try {
      for await (const [data, addr] of datagrams(this.#sock, MAX_DATAGRAM_SIZE)) {
        this.stats.datagrams++;
        await this.#onDatagram(data, addr);
      }
    } catch (e) {
      // close() ends the iterator with an error; anything else is a real socket failure
      if (!(e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted)) throw e;
    }
  }

  close(): void {
    clearInterval(this.#sweep);
    this.#transfers.flush();
    this.#refusals.flush(Date.now());
    this.#files.close();
  }

  async #onDatagram(data: Uint8Array, addr: Deno.NetAddr): Promise<void> {
    const d = this.#gate.admit(data, addr.hostname, Date.now());
    if (d.kind !== "serve") {
      if (d.why === "auth") this.stats.authFailed++;
      else if (d.why === "retry") (this.stats.requests++, this.stats.retries++);
      else this.stats.malformed++;
      this.#refusals.gate(addr, d, Date.now());
      if (d.kind === "answer") await this.#send(d.bytes, addr);
      return;
    }
    const p = d.request;
    const key = requestKey(p);
    if (this.#duplicates.seen(p.requestId, key, addr.hostname, addr.port, performance.now())) {
      this.stats.duplicates++; // answered (or being answered) already
      return;
    }
    this.stats.requests++;
    try {
      switch (p.type) {
        case "meta_request":
          this.#transfers.noteMeta(addr.hostname, p.name);
          // not awaited: hashing a large file must not stall chunk traffic
          this.#onMeta(p, addr).catch((e) => this.#internal(addr, p, e));
          return;
        case "hashes_request":
          return await this.#onHashes(p, addr);
        case "chunk_request":
          return await this.#onChunk(p, addr);
      }
    } catch (e) {
      await this.#internal(addr, p, e);
    }
  }

  async #onMeta(p: MetaRequest, addr: Deno.NetAddr): Promise<void> {
    const f = await this.#files.open(p.name, true);
    if ("code" in f) return this.#refuse(addr, p, f.code, f.message);
    const d = await this.#files.digest(f, 100);
    if (!d) return this.#refuse(addr, p, ErrorCode.Busy, this.#files.busyMessage(f));
    await this.#send(
      encode({
        type: "meta_reply",
        requestId: p.requestId,
        size: f.size,
        mtimeMs: f.mtimeMs,
        pieceSize: d.pieceSize,
        maxBlock: MAX_BLOCK_SIZE,
        digest: d.digest,
        piecesRoot: d.piecesRoot,
      }),
      addr,
    );
  }

  async #onHashes(p: HashesRequest, addr: Deno.NetAddr): Promise<void> {
    const f = await this.#files.open(p.name);
    if ("code" in f) return this.#refuse(addr, p, f.code, f.message);
    const d = await this.#files.digest(f, 0);
    if (!d) return this.#refuse(addr, p, ErrorCode.Busy, this.#files.busyMessage(f));
    if (f.fileId !== p.fileId) return this.#refuse(addr, p, ErrorCode.Stale, "file changed");
    const count = hashesReplyCount(p.firstPiece, p.count, d.pieceHashes.length / 32);
    if (count === 0) return this.#refuse(addr, p, ErrorCode.OutOfRange, "no such piece");
    const hashes = d.pieceHashes.subarray(p.firstPiece * 32, (p.firstPiece + count) * 32);
    await this.#send(
      encode({
        type: "hashes_reply",
        requestId: p.requestId,
        fileId: p.fileId,
        firstPiece: p.firstPiece,
        hashes,
      }),
      addr,
    );
  }

  async #onChunk(p: ChunkRequest, addr: Deno.NetAddr): Promise<void> {
    const f = await this.#files.open(p.name);
    if ("code" in f) return this.#refuse(addr, p, f.code, f.message);
    if (f.fileId === undefined) {
      this.#files.digest(f, 0); // start it: the client skipped the metadata request
      return this.#refuse(addr, p, ErrorCode.Busy, this.#files.busyMessage(f));
    }
    const size = this.#files.currentSize(f); // (marks it changed if it moved since hashed)
    const refusal = checkChunkRequest(p, f.fileId, size, f.changed);
    if (refusal) return this.#refuse(addr, p, refusal.code, refusal.message);
    const tooMany = this.#transfers.record(addr, p.name, p.fileId, p.length, Date.now(), size);
    if (tooMany) {
      this.stats.refused++;
      return this.#refuse(addr, p, tooMany.code, tooMany.message);
    }
    this.stats.peakTransfers = Math.max(this.stats.peakTransfers, this.#transfers.size);
    await this.#sendRange(f, p, addr);
  }

  /** Streams [offset, offset+length) as blocks, reading each straight into the send buffer. */
  async #sendRange(f: ServedFile, p: ChunkRequest, addr: Deno.NetAddr): Promise<void> {
    const end = p.offset + p.length;
    const buf = this.#sendBuf;
    for (let off = p.offset; off < end; off += p.blockSize) {
      const n = Math.min(p.blockSize, end - off);
      if (
        !this.#files.readAt(
          f,
          buf.subarray(CHUNK_REPLY_HEADER_SIZE, CHUNK_REPLY_HEADER_SIZE + n),
          off,
        )
      ) {
        return this.#refuse(addr, p, ErrorCode.Stale, "file shrank");
      }
      const len = writeChunkReplyHeader(buf, p.requestId, p.fileId, off, n);
      if (this.#limiter) await this.#pace(this.#limiter, len); // no await per datagram otherwise
      await this.#send(buf.subarray(0, len), addr);
    }
  }

  /** Waits as long as `--rate` requires before sending `bytes`; sub-ms debts are carried. */
  async #pace(limiter: TokenBucket, bytes: number): Promise<void> {
    const wait = limiter.take(bytes, performance.now());
    if (wait >= 1) await sleep(wait);
  }

  async #internal(addr: Deno.NetAddr, p: Request, e: unknown): Promise<void> {
    const msg = e instanceof Error ? e.message : String(e);
    await this.#sendError(addr, p.requestId, ErrorCode.Internal, "server I/O error");
    // the log gets the real error, the client only that there was one
    this.#refusals.request(addr, p, ErrorCode.Internal, msg, Date.now());
  }

  /** Sends ERROR `code` for request `p` and logs it (rate-limited per class). */
  #refuse(addr: Deno.NetAddr, p: Request, code: number, message: string): Promise<void> {
    this.#refusals.request(addr, p, code, message, Date.now());
    return this.#sendError(addr, p.requestId, code, message);
  }

  #sendError(addr: Deno.NetAddr, requestId: number, code: number, message: string): Promise<void> {
    return this.#send(encode({ type: "error", requestId, code, message } as Packet), addr);
  }

  async #send(bytes: Uint8Array, addr: Deno.NetAddr): Promise<void> {
    try {
      this.stats.bytesSent += await this.#sock.send(bytes, addr);
    } catch {
      this.stats.sendErrors++; // e.g. the client's port is gone: nothing to do about it
    }
  }
}

/** `udpget serve <port> [--root DIR] [--host ADDR]`: serves until SIGINT/SIGTERM. */
export async function runServe(args: string[]): Promise<number> {
  const a = parseServeArgs(args);
  try {
    const info = await Deno.stat(a.root);
    if (!info.isDirectory) {
      throw new UdpgetError(ExitCode.Usage, `--root ${a.root}: not a directory`);
    }
  } catch (e) {
    if (e instanceof UdpgetError) throw e;
    throw new UdpgetError(ExitCode.Usage, `--root ${a.root}: ${(e as Error).message}`);
  }
  const key = a.secretFile === undefined ? undefined : await readKeyFile(a.secretFile);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  const log = lineSink(a.logFormat, (line) => console.log(line));
  const cacheDir = serveCacheDir(a, log);
  try {
    const tftp = await startTftpForServe(a, (line) => log(info("tftp", line)), stop.signal);
    const stats = await serve({
      ...a,
      key,
      log,
      cacheDir,
      signal: stop.signal,
      onListening: (addr) => {
        const line = `udpget: serving ${resolve(a.root)} on udp ` +
          formatServer(addr.hostname, addr.port) + (key ? " (authenticated requests only)" : "");
        // the text format keeps its historical first line, without a timestamp
        if (a.logFormat === "text") console.log(line);
        else {
          log(info("listening", line, {
            root: resolve(a.root),
            host: addr.hostname,
            port: addr.port,
            authenticated: key !== undefined,
          }));
        }
      },
    }).catch((e) => {
      throw new UdpgetError(ExitCode.LocalIo, `cannot listen on ${a.host}:${a.port}: ${e.message}`);
    });
    log(info(
      "stopped",
      `stopped: ${stats.requests} requests, ${stats.bytesSent} bytes sent, ` +
        `${stats.malformed} malformed datagrams dropped`,
      { requests: stats.requests, bytes_sent: stats.bytesSent, malformed: stats.malformed },
    ));
    if (tftp) log(info("tftp_stopped", describeTftpStats(await tftp.done)));
    return ExitCode.Ok;
  } finally {
    stop.abort(); // stops the TFTP side too when serve() failed
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}

/**
 * The digest cache directory for `serve`: `--cache-dir`, else the default under
 * $XDG_CACHE_HOME or $HOME; undefined with `--no-cache`, or (after one warning) when the
 * environment cannot be read or names no home.
 */
function serveCacheDir(
  a: { cacheDir?: string; noCache: boolean },
  log: LogSink,
): string | undefined {
  if (a.noCache) return undefined;
  if (a.cacheDir !== undefined) return a.cacheDir;
  let dir: string | undefined;
  try {
    dir = defaultCacheDir((name) => Deno.env.get(name));
  } catch {
    log({
      level: "warn",
      event: "cache_disabled",
      msg: "digest cache disabled: cannot read HOME or XDG_CACHE_HOME " +
        "(run with --allow-env, or give --cache-dir)",
    });
    return undefined;
  }
  if (dir === undefined) {
    log({
      level: "warn",
      event: "cache_disabled",
      msg: "digest cache disabled: neither XDG_CACHE_HOME nor HOME is set (give --cache-dir)",
    });
  }
  return dir;
}
