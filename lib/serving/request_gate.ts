/**
 * The serve core's first decision on every datagram, pure (the clock comes in as an argument):
 * drop it, answer it at once without touching a file (BAD_VERSION, UNSUPPORTED, BAD_REQUEST,
 * AUTH_FAILED, or a RETRY for an unproven address), or hand a valid request from a proven
 * address to the file-serving part. `server.ts` only moves the bytes.
 *
 * @module
 */

import {
  decode,
  encode,
  ErrorCode,
  isRequestPacket,
  META_REPLY_SIZE,
  requestIdOfRequest,
  type RequestPacket,
  TOKEN_PROBE_NAME,
  UNFRAGMENTED_FLAG,
} from "../wire/packet.ts";
import { authFailureMessage, type RequestAuthenticator } from "../wire/auth.ts";
import type { CookieJar } from "../wire/cookie.ts";
import { AMPLIFICATION_FACTOR } from "./serve_policy.ts";

/** What to do with one datagram. */
export type GateDecision =
  /** Nothing: noise, or a reply type (a server never answers replies). */
  | { kind: "drop"; why: "noise" | "reply_type" }
  /** Nothing: an authentication failure whose answer would be too large or a reply's. */
  | { kind: "drop"; why: "auth"; message: string }
  /** Send this RETRY (`bytes`) back and stop there. */
  | { kind: "answer"; bytes: Uint8Array; why: "retry" }
  /** Send this ERROR (`bytes`, with `code` and `message`, for the log) back and stop there. */
  | { kind: "answer"; bytes: Uint8Array; why: "malformed" | "auth"; code: number; message: string }
  /** Serve this request (its address is proven). */
  | { kind: "serve"; request: RequestPacket };

/** Authentication (optional), decoding and address validation of incoming datagrams. */
export class RequestGate {
  /**
   * `unfragmented`: whether the socket can send replies unfragmented (flags bit 1, PROTOCOL.md
   * §7.4); without, such a request is answered UNSUPPORTED, as a server that does not know the
   * flag answers it.
   */
  constructor(
    readonly cookies: CookieJar,
    readonly auth: RequestAuthenticator | undefined,
    readonly unfragmented = false,
  ) {}

  /** Decides about `data` from `host` at `now` (ms since the epoch). */
  admit(data: Uint8Array, host: string, now: number): GateDecision {
    const received = data.length;
    if (this.auth) {
      const opened = this.auth.open(data, now);
      if (!opened.ok) return this.#refuseAuth(data, authFailureMessage(opened.reason));
      data = opened.packet;
    }
    const r = decode(data);
    if (!r.ok) {
      const requestId = r.error.requestId;
      if (requestId === undefined) return { kind: "drop", why: "noise" }; // not even a header
      const code = r.error.kind === "bad_version"
        ? ErrorCode.BadVersion
        : r.error.kind === "unknown_type" || r.error.kind === "bad_flags"
        ? ErrorCode.Unsupported
        : ErrorCode.BadRequest;
      const message = r.error.message;
      const bytes = encode({ type: "error", requestId, code, message });
      return { kind: "answer", bytes, why: "malformed", code, message };
    }
    const p = r.packet;
    if (!isRequestPacket(p)) return { kind: "drop", why: "reply_type" };
    if (p.type === "chunk_request" && p.unfragmented && !this.unfragmented) {
      const code = ErrorCode.Unsupported;
      const message = `unsupported flags 0x${UNFRAGMENTED_FLAG.toString(16)}`;
      const bytes = encode({ type: "error", requestId: p.requestId, code, message });
      return { kind: "answer", bytes, why: "malformed", code, message };
    }
    if (!this.cookies.valid(p.token, host, now) && !answerableUnproven(p, received)) {
      // unproven source address: a 26-byte RETRY, never more than 3x what it sent
      const token = this.cookies.issue(host, now);
      return {
        kind: "answer",
        bytes: encode({ type: "retry", requestId: p.requestId, token }),
        why: "retry",
      };
    }
    return { kind: "serve", request: p };
  }

  /** AUTH_FAILED if the datagram is a request and the answer is within 3× its size. */
  #refuseAuth(data: Uint8Array, message: string): GateDecision {
    const requestId = requestIdOfRequest(data);
    if (requestId === undefined) return { kind: "drop", why: "auth", message }; // never answer a reply
    const code = ErrorCode.AuthFailed;
    const bytes = encode({ type: "error", requestId, code, message });
    if (bytes.length > AMPLIFICATION_FACTOR * data.length) {
      return { kind: "drop", why: "auth", message };
    }
    return { kind: "answer", bytes, why: "auth", code, message };
  }
}

/**
 * Whether a request may be answered before its source address is proven (PROTOCOL.md §7.1):
 * a metadata request whose answer (at most a META_REPLY) is within 3 times what it sent, so the
 * server amplifies nothing, as QUIC's anti-amplification limit (RFC 9000 §8.1). The client then
 * learns the file in one round trip instead of two; the chunks, far larger, still need a token.
 */
function answerableUnproven(p: RequestPacket, received: number): boolean {
  return p.type === "meta_request" && p.name !== TOKEN_PROBE_NAME &&
    AMPLIFICATION_FACTOR * received >= META_REPLY_SIZE;
}
