/**
 * `--block-size auto`: finds the largest block that gets through to every chosen server, in
 * the spirit of RFC 8899 (packetization-layer path MTU discovery): one single-block request
 * per candidate size and server, all at once, each retried under the shared retry policy. The
 * largest size every server answered in full wins; a size one server never answered in full
 * is out (a lost probe and a too-big datagram look the same, so each gets two attempts).
 * Pure: times come in as arguments.
 *
 * @module
 */

import type { Packet } from "../wire/packet.ts";
import {
  attemptTimeout,
  type RequestMachine,
  type RequestTransmit,
  type RetryOptions,
} from "./retry_schedule.ts";

/** Candidate block sizes, largest first: 64 KB datagrams, 32 KiB, jumbo and Ethernet frames. */
export const PROBE_BLOCK_SIZES = [65000, 32768, 8972 - 28, 1472 - 28, 1200];

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

  /** Plans one probe per candidate size and server; nothing is sent before `pollTransmit`. */
  constructor(o: BlockProbeOptions) {
    this.#o = o;
    this.#sizes = o.size === 0 ? [] : PROBE_BLOCK_SIZES.filter((s) => s <= o.maxBlock);
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
    for (const size of this.#sizes) {
      const states = this.#probes.filter((p) => p.blockSize === size).map((p) => p.state);
      if (states.every((s) => s === "ok")) return true; // the largest size that can still win
      if (!states.includes("failed")) return false; // still open: wait for it
    }
    return true;
  }

  /** The block size to use (valid once `done`). */
  result(): number {
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
    const packet: Packet = {
      type: "chunk_request",
      requestId: p.id,
      token: this.#tokens.get(p.server) ?? this.#o.token(p.server),
      fileId: this.#o.fileId,
      offset: 0,
      length: p.length,
      blockSize: p.blockSize,
      name: this.#o.name,
    };
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
