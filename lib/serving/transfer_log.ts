/**
 * Which chunk requests make up one transfer, the limits on concurrent transfers, and a log
 * line when each starts and ends. Pure: time comes in as an argument; events go to a sink.
 *
 * What a transfer is: one fetch of one file by one client. A fetch uses a socket (so a source
 * port) per worker, all opened when it starts, and opens new ones for the next fetch; and it
 * asks for the file's metadata (META) before its first chunk request. So a chunk request
 * belongs to the open transfer of the same client IP, name and file id that already saw its
 * port; a port not seen yet joins the newest such transfer, unless a META request for that name
 * came from the client since that transfer started: then a new fetch has begun, and it gets a
 * new transfer (and a new id). Two fetches of one file from one host running at the same time
 * may still share a line; sequential fetches never do. Nothing is kept per port beyond the 64
 * listed per transfer, so the state stays bounded by the transfer limits below.
 *
 * @module
 */

import { ErrorCode } from "../wire/packet.ts";
import type { Refusal } from "./serve_policy.ts";
import type { LogSink } from "./log_event.ts";
import { formatServer } from "../base/format.ts";
import { formatRate } from "../base/format.ts";

/** A transfer is over when its client has been quiet this long (ms). */
export const TRANSFER_IDLE_MS = 2000;

/** Transfers one client IP may have open at once. */
export const MAX_TRANSFERS_PER_CLIENT = 16;

/**
 * Transfers tracked at once, all clients together: the server's per-client state stays bounded
 * however many addresses have validated; beyond it new transfers are refused until some expire.
 */
export const MAX_OPEN_TRANSFERS = 4096;

/** Source ports remembered per transfer; more are only counted. */
const MAX_PORTS_LISTED = 64;

interface Transfer {
  id: number;
  host: string;
  ports: Set<number>;
  extraPorts: number;
  name: string;
  fileId: bigint;
  bytes: number;
  requests: number;
  first: number;
  last: number;
  /** A META request for this name came from this host since: new ports start a new transfer. */
  sealed: boolean;
}

/** Aggregates chunk requests into transfers, limits them, and logs their start and end. */
export class TransferLog {
  #out: LogSink;
  #open = new Map<number, Transfer>();
  /** Open transfers per `host \0 name`, oldest first. */
  #byClientName = new Map<string, Transfer[]>();
  #perClient = new Map<string, number>();
  #lastSweep = -Infinity;
  #nextId = 1;

  /** Events go to `out`. */
  constructor(out: LogSink) {
    this.#out = out;
  }

  /** Number of transfers being tracked. */
  get size(): number {
    return this.#open.size;
  }

  /** A META request for `name` came from `host`: its next new ports belong to a new fetch. */
  noteMeta(host: string, name: string): void {
    for (const t of this.#byClientName.get(`${host}\0${name}`) ?? []) t.sealed = true;
  }

  /**
   * Counts a chunk request of `bytes` by `addr` for `name` (file id `fileId`, `fileSize` bytes)
   * at `now` (ms), or refuses it when it would open one transfer too many (for this client, or
   * for the whole server).
   */
  record(
    addr: Deno.NetAddr,
    name: string,
    fileId: bigint,
    bytes: number,
    now: number,
    fileSize?: number,
  ): Refusal | undefined {
    const key = `${addr.hostname}\0${name}`;
    const list = this.#byClientName.get(key);
    let t = list?.find((t) => t.fileId === fileId && t.ports.has(addr.port));
    if (!t && list) {
      const newest = list.findLast((t) => t.fileId === fileId);
      if (newest && !newest.sealed) t = newest;
    }
    if (!t) {
      const refusal = this.#admit(addr.hostname, now);
      if (refusal) return refusal;
      t = {
        id: this.#nextId++,
        host: addr.hostname,
        ports: new Set(),
        extraPorts: 0,
        name,
        fileId,
        bytes: 0,
        requests: 0,
        first: now,
        last: now,
        sealed: false,
      };
      this.#open.set(t.id, t);
      const l = this.#byClientName.get(key);
      if (l) l.push(t);
      else this.#byClientName.set(key, [t]);
      this.#perClient.set(addr.hostname, (this.#perClient.get(addr.hostname) ?? 0) + 1);
      this.#out(describeStart(t, addr.port, fileSize));
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

  /** Logs the end of, and forgets, transfers idle since before `now - TRANSFER_IDLE_MS`. */
  sweep(now: number): void {
    this.#lastSweep = now;
    for (const [id, t] of this.#open) {
      if (now - t.last < TRANSFER_IDLE_MS) continue;
      this.#open.delete(id);
      const key = `${t.host}\0${t.name}`;
      const rest = (this.#byClientName.get(key) ?? []).filter((o) => o !== t);
      if (rest.length > 0) this.#byClientName.set(key, rest);
      else this.#byClientName.delete(key);
      const left = (this.#perClient.get(t.host) ?? 1) - 1;
      if (left > 0) this.#perClient.set(t.host, left);
      else this.#perClient.delete(t.host);
      this.#out(describeEnd(t));
    }
  }

  /** Logs the end of every open transfer (at shutdown). */
  flush(): void {
    this.sweep(Infinity);
  }
}

function describeStart(t: Transfer, port: number, fileSize: number | undefined) {
  const size = fileSize === undefined ? "" : ` (${fileSize} bytes)`;
  return {
    level: "info" as const,
    event: "transfer_start",
    msg: `transfer ${t.id} start: ${JSON.stringify(t.name)}${size} to ` +
      formatServer(t.host, port),
    fields: {
      transfer: t.id,
      client: t.host,
      port,
      name: t.name,
      file_id: t.fileId.toString(16).padStart(16, "0"),
      size: fileSize ?? null,
    },
  };
}

function describeEnd(t: Transfer) {
  const secs = Math.max(0.001, (t.last - t.first) / 1000);
  const n = t.ports.size + t.extraPorts;
  const ports = n === 1 ? "1 port" : `${n} ports`;
  const client = t.host.includes(":") ? `[${t.host}]` : t.host;
  const rate = t.bytes / secs;
  return {
    level: "info" as const,
    event: "transfer_end",
    msg: `transfer ${t.id} end: ${JSON.stringify(t.name)} to ${client} (${ports}): ` +
      `${t.bytes} bytes in ${t.requests} requests over ${secs.toFixed(3)} s (${formatRate(rate)})`,
    fields: {
      transfer: t.id,
      client: t.host,
      ports: n,
      name: t.name,
      file_id: t.fileId.toString(16).padStart(16, "0"),
      bytes: t.bytes,
      requests: t.requests,
      seconds: Number(secs.toFixed(3)),
      bytes_per_second: Math.round(rate),
    },
  };
}
