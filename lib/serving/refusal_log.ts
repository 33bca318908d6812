/**
 * Log events for refused requests: which class a refusal belongs to, what its line says, and
 * (through a `RefusalLimiter`) which ones get a line at all. Pure: time comes in as an
 * argument, events go to a sink; `server.ts` calls it where it sends an ERROR or drops.
 *
 * @module
 */

import { ErrorCode, errorCodeName } from "../wire/packet.ts";
import type { GateDecision } from "./request_gate.ts";
import type { LogLevel, LogSink } from "./log_event.ts";
import {
  describeSuppressed,
  RefusalLimiter,
  type RefusalLimits,
  type Suppressed,
} from "./refusal_limiter.ts";
import { formatServer } from "../base/format.ts";

/** Refusal classes by the error code sent; each class is rate-limited on its own. */
const CLASS_OF_CODE: ReadonlyMap<number, string> = new Map([
  [ErrorCode.NotFound, "not_found"],
  [ErrorCode.AccessDenied, "access_denied"],
  [ErrorCode.BadRequest, "malformed"],
  [ErrorCode.BadVersion, "malformed"],
  [ErrorCode.Unsupported, "unsupported"],
  [ErrorCode.OutOfRange, "out_of_range"],
  [ErrorCode.Stale, "stale"],
  [ErrorCode.Busy, "busy"],
  [ErrorCode.AuthFailed, "auth_failed"],
  [ErrorCode.Internal, "internal"],
  [ErrorCode.TooMany, "too_many"],
  [ErrorCode.TooBig, "too_big"],
]);

/** The refusal class of error `code`, e.g. `not_found`. */
export function refusalClass(code: number): string {
  return CLASS_OF_CODE.get(code) ?? "other";
}

const REQUEST_LABEL = {
  meta_request: "META",
  hashes_request: "HASHES",
  chunk_request: "CHUNK",
  have_request: "HAVE",
  peers_request: "PEERS",
} as const;

/** The request a refusal answers, as far as the log needs it. */
export interface RefusedRequest {
  type: keyof typeof REQUEST_LABEL;
  name: string;
}

/** Writes rate-limited log lines for refused requests. */
export class RefusalLog {
  #out: LogSink;
  #limiter: RefusalLimiter;

  /** Lines go to `out`, limited by `limits` (default `DEFAULT_REFUSAL_LIMITS`). */
  constructor(out: LogSink, limits?: RefusalLimits) {
    this.#out = out;
    this.#limiter = new RefusalLimiter(limits);
  }

  /** Request `p` from `addr` was answered with ERROR `code` and `message` at `now` (ms). */
  request(addr: Deno.NetAddr, p: RefusedRequest, code: number, message: string, now: number): void {
    const cls = refusalClass(code);
    const level: LogLevel = code === ErrorCode.Internal ? "error" : "info";
    if (!this.#admit(cls, addr, now)) return;
    this.#emit(addr, cls, level, REQUEST_LABEL[p.type], p.name, errorCodeName(code), message);
  }

  /** The gate refused a datagram from `addr` (anything but "serve" and RETRY is a refusal). */
  gate(addr: Deno.NetAddr, d: GateDecision, now: number): void {
    if (d.kind === "serve" || d.why === "retry") return;
    const cls = d.why === "auth" ? "auth_failed" : "malformed";
    if (!this.#admit(cls, addr, now)) return;
    if (d.kind === "answer") {
      this.#emit(addr, cls, "info", "datagram", undefined, errorCodeName(d.code), d.message);
    } else {
      const message = d.why === "auth"
        ? `${d.message} (not answered: it would be a reply's, or larger than 3x the datagram)`
        : d.why === "noise"
        ? "undecodable datagram"
        : "a reply type sent to a server";
      this.#emit(addr, cls, "info", "datagram", undefined, "dropped", message);
    }
  }

  /** Writes the summaries of intervals that have run their length by `now`. */
  tick(now: number): void {
    for (const s of this.#limiter.tick(now)) this.#suppressed(s);
  }

  /** Writes every pending summary (at shutdown). */
  flush(now: number): void {
    for (const s of this.#limiter.flush(now)) this.#suppressed(s);
  }

  #admit(cls: string, addr: Deno.NetAddr, now: number): boolean {
    const d = this.#limiter.admit(cls, addr.hostname, now);
    if (d.summary) this.#suppressed(d.summary);
    return d.log;
  }

  #emit(
    addr: Deno.NetAddr,
    cls: string,
    level: LogLevel,
    request: string,
    name: string | undefined,
    code: string,
    message: string,
  ): void {
    // names and messages come from the network: JSON-quoted, they cannot forge a line
    const what = name === undefined ? request : `${request} ${JSON.stringify(name)}`;
    this.#out({
      level,
      event: "refused",
      msg: `refused ${what} from ${formatServer(addr.hostname, addr.port)}: ${code} ` +
        JSON.stringify(message),
      fields: {
        class: cls,
        client: addr.hostname,
        port: addr.port,
        request,
        name: name ?? null,
        code,
        message,
      },
    });
  }

  #suppressed(s: Suppressed): void {
    this.#out({
      level: "info",
      event: "refusals_suppressed",
      msg: describeSuppressed(s),
      fields: {
        class: s.cls,
        count: s.count,
        addresses: s.addresses,
        addresses_capped: s.addressesCapped,
        seconds: Math.max(1, Math.round(s.periodMs / 1000)),
      },
    });
  }
}
