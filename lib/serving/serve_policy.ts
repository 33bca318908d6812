/**
 * The server's decisions that do not touch a socket or a file: whether a chunk request may
 * be answered, how many hashes fit in a reply, and one log line per transfer.
 *
 * @module
 */

import { type ChunkRequest, ErrorCode, MAX_BLOCK_SIZE } from "../wire/packet.ts";

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

/**
 * Most bytes a server sends toward an address for each byte received from it, until the
 * address is validated (RFC 9000 §8).
 */
export const AMPLIFICATION_FACTOR = 3;

/**
 * Checks a chunk request against the file's current identity and size; `changed`: the file
 * was modified since it was hashed, so its bytes no longer match the digest clients hold.
 */
export function checkChunkRequest(
  p: ChunkRequest,
  fileId: bigint,
  size: number,
  changed = false,
): Refusal | undefined {
  if (p.fileId !== fileId || changed) return { code: ErrorCode.Stale, message: "file changed" };
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
  host: string;
  ports: Set<number>;
  extraPorts: number;
  name: string;
  bytes: number;
  requests: number;
  first: number;
  last: number;
}

/** A transfer is over when its client has been quiet this long (ms). */
export const TRANSFER_IDLE_MS = 2000;

/** Transfers (distinct files) one client IP may have open at once. */
export const MAX_TRANSFERS_PER_CLIENT = 16;

/**
 * Transfers tracked at once, all clients together: the server's per-client state stays bounded
 * however many addresses have validated; beyond it new transfers are refused until some expire.
 */
export const MAX_OPEN_TRANSFERS = 4096;

/** Source ports remembered per transfer (for the log line); more are only counted. */
const MAX_PORTS_LISTED = 64;

/**
 * Aggregates chunk requests into transfers, limits them, and logs one line per transfer once
 * it goes idle, instead of one line per datagram. A transfer is keyed by client IP and file,
 * not by port: one fetch uses a socket (so a port) per worker. Idle transfers expire, so the
 * state is bounded by `MAX_OPEN_TRANSFERS` and `MAX_TRANSFERS_PER_CLIENT`.
 */
export class TransferLog {
  #out: (line: string) => void;
  #open = new Map<string, Transfer>();
  #perClient = new Map<string, number>();
  #lastSweep = -Infinity;

  /** Log lines go to `out`. */
  constructor(out: (line: string) => void) {
    this.#out = out;
  }

  /** Writes one line through to the log. */
  log(line: string): void {
    this.#out(line);
  }

  /** Number of transfers being tracked. */
  get size(): number {
    return this.#open.size;
  }

  /**
   * Counts a request of `bytes` by `addr` for `name` at time `now` (ms), or refuses it when it
   * would open one transfer too many (for this client, or for the whole server).
   */
  record(addr: Deno.NetAddr, name: string, bytes: number, now: number): Refusal | undefined {
    const key = `${addr.hostname} ${name}`;
    let t = this.#open.get(key);
    if (!t) {
      const refusal = this.#admit(addr.hostname, now);
      if (refusal) return refusal;
      const client = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
      t = {
        client,
        host: addr.hostname,
        ports: new Set(),
        extraPorts: 0,
        name,
        bytes: 0,
        requests: 0,
        first: now,
        last: now,
      };
      this.#open.set(key, t);
      this.#perClient.set(addr.hostname, (this.#perClient.get(addr.hostname) ?? 0) + 1);
    }
    if (t.ports.size < MAX_PORTS_LISTED || t.ports.has(addr.port)) t.ports.add(addr.port);
    else t.extraPorts++;
    t.bytes += bytes;
    t.requests++;
    t.last = now;
    return undefined;
  }

  #admit(host: string, now: number): Refusal | undefined {
    const full = (this.#perClient.get(host) ?? 0) >= MAX_TRANSFERS_PER_CLIENT ||
      this.#open.size >= MAX_OPEN_TRANSFERS;
    // at a limit, expire idle transfers first, but at most every 100 ms: a flood of refused
    // requests must not make each one walk the whole table
    if (full && now - this.#lastSweep >= 100) this.sweep(now);
    if ((this.#perClient.get(host) ?? 0) >= MAX_TRANSFERS_PER_CLIENT) {
      return {
        code: ErrorCode.TooMany,
        message: `more than ${MAX_TRANSFERS_PER_CLIENT} transfers from one client`,
      };
    }
    if (this.#open.size >= MAX_OPEN_TRANSFERS) {
      return { code: ErrorCode.TooMany, message: "server busy with too many transfers" };
    }
    return undefined;
  }

  /** Logs and forgets transfers idle since before `now - TRANSFER_IDLE_MS`. */
  sweep(now: number): void {
    this.#lastSweep = now;
    for (const [key, t] of this.#open) {
      if (now - t.last < TRANSFER_IDLE_MS) continue;
      this.#open.delete(key);
      const left = (this.#perClient.get(t.host) ?? 1) - 1;
      if (left > 0) this.#perClient.set(t.host, left);
      else this.#perClient.delete(t.host);
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
  const n = t.ports.size + t.extraPorts;
  const ports = n === 1 ? "1 port" : `${n} ports`;
  return `sent ${JSON.stringify(t.name)} to ${t.client} (${ports}): ${t.bytes} bytes in ` +
    `${t.requests} requests over ${secs.toFixed(3)} s`;
}
