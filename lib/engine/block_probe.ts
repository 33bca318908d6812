/**
 * `--block-size auto`: finds the largest block that gets through to every chosen server, in
 * the spirit of RFC 8899 (packetization-layer path MTU discovery): one single-block request
 * per candidate size and server, all at once, each retried under the shared retry policy. The
 * largest size every server answered in full wins; a size one server never answered in full
 * is out (a lost probe and a too-big datagram look the same, so each gets two attempts).
 *
 * Off loopback the probes ask for unfragmented replies (PROTOCOL.md §7.4), so a probe cannot
 * succeed through IP fragmentation: the server sets the don't-fragment bit and answers TOO_BIG
 * at once when its own interface is too small. A server that cannot (the pure-Deno layer, an
 * older server) answers UNSUPPORTED, and then the Ethernet-safe size the caller gives is used,
 * as without a probe. Only probes are sent unfragmented: the data that follows may still be
 * fragmented by a path that shrinks later, which is slow but never a black hole.
 * Pure: times come in as arguments.
 *
 * @module
 */

import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkRequest,
  ErrorCode,
  type Packet,
} from "../wire/packet.ts";
import {
  attemptTimeout,
  type RequestMachine,
  type RequestTransmit,
  type RetryOptions,
} from "./retry_schedule.ts";

/**
 * Candidate block sizes on loopback, largest first: 64 KB datagrams, 32 KiB, jumbo and Ethernet
 * frames.
 */
export const PROBE_BLOCK_SIZES = [65000, 32768, 8972 - 28, 1472 - 28, 1200];

/**
 * Link MTUs probed off loopback, largest first: jumbo frames (9000, and the 8896 some clouds
 * allow), FDDI-sized 4352, Ethernet 1500. Below that, the floor.
 */
export const PATH_MTUS = [9000, 8896, 4352, 1500];

/** An address family of a path. */
export type PathFamily = "ipv4" | "ipv6";

/** The block whose CHUNK_REPLY fills one `mtu`-byte IP packet exactly. */
export function blockForMtu(mtu: number, family: PathFamily): number {
  const ipHeader = family === "ipv4" ? 20 : 40;
  return mtu - ipHeader - 8 - CHUNK_REPLY_HEADER_SIZE;
}

/** Candidate sizes off loopback for paths of these families, largest first, the floor last. */
export function pathProbeSizes(families: PathFamily[]): number[] {
  const sizes = new Set<number>();
  for (const mtu of PATH_MTUS) for (const f of families) sizes.add(blockForMtu(mtu, f));
  sizes.add(PROBE_FLOOR);
  return [...sizes].sort((a, b) => b - a);
}

/**
 * Largest block `auto` picks. Bigger datagrams cost less per byte, but a socket buffers fewer
 * of them; measured on loopback, 32 KiB was the best trade-off.
 */
export const PROBE_CAP = 32768;

/** Chosen when no candidate gets through (the IPv6 minimum MTU's worth, RFC 8899 BASE_PLPMTU). */
export const PROBE_FLOOR = 1200;

/** Retry policy of a probe: a short first wait (loopback), two attempts. */
export const PROBE_RETRY: RetryOptions = { firstTimeoutMs: 300, maxTimeoutMs: 1200, attempts: 2 };

/** RETRY answers followed per probe (address validation) before counting it failed. */
const MAX_RETRY_FOLLOWS = 2;

/** What the probe needs to know about the file and the servers. */
export interface BlockProbeOptions {
  fileId: bigint;
  name: string;
  size: number;
  /** Largest block the servers accept (from the metadata). */
  maxBlock: number;
  /** Servers to probe (their indices). */
  servers: number[];
  /** Address-validation token of each server. */
  token: (server: number) => Uint8Array;
  /** Round trip of each server, if known (ms). */
  rtt: (server: number) => number | undefined;
  nextRequestId: () => number;
  /** Candidate sizes, largest first (default {@link PROBE_BLOCK_SIZES}). */
  sizes?: number[];
  /**
   * Ask for unfragmented replies (off loopback). The size used when a server cannot send them;
   * undefined: probes may be fragmented (loopback, where nothing is).
   */
  unfragmented?: { fallback: number };
}

type ProbeState = "waiting" | "inflight" | "ok" | "failed";

interface Probe {
  blockSize: number;
  length: number;
  server: number;
  state: ProbeState;
  attempt: number;
  follows: number;
  id: number;
  sentAt: number;
}

/** Probes every candidate size against every server at once. */
export class BlockProbe implements RequestMachine {
  #o: BlockProbeOptions;
  #sizes: number[];
  #probes: Probe[] = [];
  #tokens = new Map<number, Uint8Array>();
  /** A server answered UNSUPPORTED to an unfragmented probe: it cannot send them. */
  #incapable = false;

  /** Plans one probe per candidate size and server; nothing is sent before `pollTransmit`. */
  constructor(o: BlockProbeOptions) {
    this.#o = o;
    const sizes = o.sizes ?? PROBE_BLOCK_SIZES;
    this.#sizes = o.size === 0 ? [] : sizes.filter((s) => s <= o.maxBlock);
    for (const blockSize of this.#sizes) {
      for (const server of o.servers) {
        const length = Math.min(blockSize, o.size);
        this.#probes.push({
          blockSize,
          length,
          server,
          state: "waiting",
          attempt: 0,
          follows: 0,
          id: -1,
          sentAt: 0,
        });
      }
    }
  }

  /** Done once the best size is known: no larger size can still succeed. */
  get done(): boolean {
    if (this.#incapable) return true;
    for (const size of this.#sizes) {
      const states = this.#probes.filter((p) => p.blockSize === size).map((p) => p.state);
      if (states.every((s) => s === "ok")) return true; // the largest size that can still win
      if (!states.includes("failed")) return false; // still open: wait for it
    }
    return true;
  }

  /** The block size to use (valid once `done`). */
  result(): number {
    if (this.#incapable) return Math.min(this.#o.unfragmented!.fallback, this.#o.maxBlock);
    const best = this.#sizes.find((size) =>
      this.#probes.every((p) => p.blockSize !== size || p.state === "ok")
    );
    return Math.min(PROBE_CAP, best ?? Math.min(PROBE_FLOOR, this.#o.maxBlock));
  }

  handleReply(_now: number, server: number, p: Packet): boolean {
    const probe = this.#probes.find((x) =>
      x.state === "inflight" && x.id === p.requestId && x.server === server
    );
    if (!probe) return false;
    if (p.type === "retry") {
      this.#tokens.set(server, p.token.slice());
      probe.state = probe.follows++ < MAX_RETRY_FOLLOWS ? "waiting" : "failed";
    } else if (p.type === "chunk_reply" && p.data.length === probe.length) {
      probe.state = "ok";
    } else if (
      p.type === "error" && p.code === ErrorCode.Unsupported && this.#o.unfragmented !== undefined
    ) {
      // (block sizes are within the server's max_block: it is the flag it does not know)
      probe.state = "failed";
      this.#incapable = true;
    } else {
      probe.state = "failed"; // a short block or an error: this size does not work here
    }
    return true;
  }

  handleTimeout(now: number): void {
    for (const p of this.#probes) {
      if (p.state === "inflight" && now >= p.sentAt + this.#timeout(p)) this.#fail(p);
    }
  }

  pollTransmit(now: number): RequestTransmit | undefined {
    if (this.done) return undefined;
    const p = this.#probes.find((x) => x.state === "waiting");
    if (!p) return undefined;
    p.state = "inflight";
    p.id = this.#o.nextRequestId() >>> 0;
    p.sentAt = now;
    const packet: ChunkRequest = {
      type: "chunk_request",
      requestId: p.id,
      token: this.#tokens.get(p.server) ?? this.#o.token(p.server),
      fileId: this.#o.fileId,
      offset: 0,
      length: p.length,
      blockSize: p.blockSize,
      name: this.#o.name,
    };
    if (this.#o.unfragmented !== undefined) packet.unfragmented = true;
    return { server: p.server, packet };
  }

  pollTimeout(): number | undefined {
    if (this.done) return undefined;
    let t = Infinity;
    for (const p of this.#probes) {
      if (p.state === "inflight") t = Math.min(t, p.sentAt + this.#timeout(p));
    }
    return t === Infinity ? undefined : t;
  }

  #timeout(p: Probe): number {
    return attemptTimeout(PROBE_RETRY, p.attempt, this.#o.rtt(p.server));
  }

  #fail(p: Probe): void {
    p.attempt++;
    p.state = p.attempt < PROBE_RETRY.attempts ? "waiting" : "failed";
  }
}
