/**
 * The server's decisions that do not touch a socket or a file: whether a chunk request may
 * be answered, how many hashes fit in a reply, and one log line per transfer.
 *
 * @module
 */

import { type ChunkRequest, ErrorCode, MAX_BLOCK_SIZE } from "./packet.ts";

/** Longest range one request may ask for (bounds the work a single datagram can trigger). */
export const MAX_REQUEST_BYTES = 16 << 20;

/**
 * Most datagrams one request may trigger. Without it a 50-byte request for 16 MiB in 1-byte
 * blocks would keep the server sending for minutes (found by the fuzz test).
 */
export const MAX_BLOCKS_PER_REQUEST = 1024;

/** Hashes per HASHES_REPLY: 40 × 32 B keeps the reply under an Ethernet-sized datagram. */
export const HASHES_PER_REPLY = 40;

/** Why a request is refused, as sent back to the client. */
export interface Refusal {
  code: number;
  message: string;
}

/** Checks a chunk request against the file's current identity and size. */
export function checkChunkRequest(
  p: ChunkRequest,
  fileId: bigint,
  size: number,
): Refusal | undefined {
  if (p.fileId !== fileId) return { code: ErrorCode.Stale, message: "file changed" };
  if (p.blockSize > MAX_BLOCK_SIZE) {
    return { code: ErrorCode.Unsupported, message: `block size above ${MAX_BLOCK_SIZE}` };
  }
  if (p.length > MAX_REQUEST_BYTES) {
    return { code: ErrorCode.Unsupported, message: `range longer than ${MAX_REQUEST_BYTES}` };
  }
  if (Math.ceil(p.length / p.blockSize) > MAX_BLOCKS_PER_REQUEST) {
    return {
      code: ErrorCode.Unsupported,
      message: `more than ${MAX_BLOCKS_PER_REQUEST} blocks in one request`,
    };
  }
  if (p.offset + p.length > size) {
    return { code: ErrorCode.OutOfRange, message: `range ends past ${size}` };
  }
  return undefined;
}

/** How many of the `count` hashes asked for from `first` exist and fit in one reply. */
export function hashesReplyCount(first: number, count: number, pieceCount: number): number {
  if (first >= pieceCount) return 0;
  return Math.min(count, HASHES_PER_REPLY, pieceCount - first);
}

interface Transfer {
  client: string;
  ports: Set<number>;
  name: string;
  bytes: number;
  requests: number;
  first: number;
  last: number;
}

/** A transfer is over when its client has been quiet this long (ms). */
export const TRANSFER_IDLE_MS = 2000;

/**
 * Aggregates chunk requests into transfers and logs one line per transfer once it goes idle,
 * instead of one line per datagram. A transfer is keyed by client IP and file, not by port:
 * one fetch uses a socket (so a port) per worker.
 */
export class TransferLog {
  #out: (line: string) => void;
  #open = new Map<string, Transfer>();

  /** Log lines go to `out`. */
  constructor(out: (line: string) => void) {
    this.#out = out;
  }

  /** Writes one line through to the log. */
  log(line: string): void {
    this.#out(line);
  }

  /** Counts a request of `bytes` by `addr` for `name` at time `now` (ms). */
  record(addr: Deno.NetAddr, name: string, bytes: number, now: number): void {
    const key = `${addr.hostname} ${name}`;
    let t = this.#open.get(key);
    if (!t) {
      const client = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
      t = { client, ports: new Set(), name, bytes: 0, requests: 0, first: now, last: now };
      this.#open.set(key, t);
    }
    t.ports.add(addr.port);
    t.bytes += bytes;
    t.requests++;
    t.last = now;
  }

  /** Logs and forgets transfers idle since before `now - TRANSFER_IDLE_MS`. */
  sweep(now: number): void {
    for (const [key, t] of this.#open) {
      if (now - t.last < TRANSFER_IDLE_MS) continue;
      this.#open.delete(key);
      this.#out(describe(t));
    }
  }

  /** Logs every open transfer (at shutdown). */
  flush(): void {
    this.sweep(Infinity);
  }
}

function describe(t: Transfer): string {
  const secs = Math.max(0.001, (t.last - t.first) / 1000);
  const ports = t.ports.size === 1 ? "1 port" : `${t.ports.size} ports`;
  return `sent ${JSON.stringify(t.name)} to ${t.client} (${ports}): ${t.bytes} bytes in ` +
    `${t.requests} requests over ${secs.toFixed(3)} s`;
}
