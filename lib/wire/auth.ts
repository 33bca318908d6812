/**
 * Optional access control (`--secret-file`): requests carry a keyed-MAC trailer, flagged by
 * header flags bit 0 (PROTOCOL.md §7.2). Pure apart from hashing (keys, clocks and nonces are
 * passed in) and `readKeyFile`.
 *
 * Trailer, appended after the body: `timestamp_ms u64 | nonce 8 bytes | tag 16 bytes`, where
 * `tag` is HMAC-SHA256(key, every byte before it, flags included), truncated to 128 bits. The
 * server accepts a timestamp within `AUTH_WINDOW_MS` of its clock and each (timestamp, nonce)
 * once, so a captured request cannot be replayed.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import { HEADER_SIZE } from "./packet.ts";
import { ExitCode, UdpgetError } from "../base/exit.ts";

/** Header flags bit announcing the trailer. */
export const AUTH_FLAG = 0x0001;
/** Bytes of the trailer: timestamp, nonce, tag. */
export const AUTH_TRAILER_SIZE = 32;
const TAG_SIZE = 16;
/** Largest clock difference tolerated between client and server (ms). */
export const AUTH_WINDOW_MS = 30_000;
/** Shortest key accepted (bytes). */
export const MIN_KEY_BYTES = 16;

/** Appends the trailer to an encoded request and sets flags bit 0. `nonce`: 8 random bytes. */
export function seal(
  packet: Uint8Array,
  key: Uint8Array,
  now: number,
  nonce: Uint8Array,
): Uint8Array {
  const out = new Uint8Array(packet.length + AUTH_TRAILER_SIZE);
  out.set(packet);
  const view = new DataView(out.buffer);
  view.setUint16(4, view.getUint16(4) | AUTH_FLAG);
  view.setBigUint64(packet.length, BigInt(Math.floor(now)));
  out.set(nonce.subarray(0, 8), packet.length + 8);
  const macEnd = out.length - TAG_SIZE;
  out.set(mac(key, out.subarray(0, macEnd)), macEnd);
  return out;
}

/** Why a request was not authenticated. */
export type AuthFailure = "missing" | "bad_mac" | "stale" | "replay";

/** The request without its trailer (flags bit 0 cleared), or why it is refused. */
export type OpenResult =
  | { ok: true; packet: Uint8Array }
  | { ok: false; reason: AuthFailure };

/** Checks requests' trailers with one key, remembering nonces against replay. */
export class RequestAuthenticator {
  #key: Uint8Array;
  #guard: ReplayGuard;

  /** `key`: the shared secret; `maxRemembered` bounds the replay memory. */
  constructor(key: Uint8Array, maxRemembered = 200_000) {
    this.#key = key;
    this.#guard = new ReplayGuard(AUTH_WINDOW_MS, maxRemembered);
  }

  /** Verifies `bytes` at time `now` (ms). The MAC is checked before anything is remembered. */
  open(bytes: Uint8Array, now: number): OpenResult {
    if (bytes.length < HEADER_SIZE + AUTH_TRAILER_SIZE) return { ok: false, reason: "missing" };
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const flags = view.getUint16(4);
    if (!(flags & AUTH_FLAG)) return { ok: false, reason: "missing" };
    const macEnd = bytes.length - TAG_SIZE;
    const tag = bytes.subarray(macEnd);
    if (!timingSafeEqual(tag, mac(this.#key, bytes.subarray(0, macEnd)))) {
      return { ok: false, reason: "bad_mac" };
    }
    const at = bytes.length - AUTH_TRAILER_SIZE;
    const timestamp = Number(view.getBigUint64(at));
    const nonce = view.getBigUint64(at + 8);
    if (Math.abs(now - timestamp) > AUTH_WINDOW_MS) return { ok: false, reason: "stale" };
    if (!this.#guard.firstUse(timestamp, nonce, now)) return { ok: false, reason: "replay" };
    const packet = bytes.slice(0, at);
    new DataView(packet.buffer).setUint16(4, flags & ~AUTH_FLAG);
    return { ok: true, packet };
  }
}

/** The human-readable reason sent back in AUTH_FAILED. */
export function authFailureMessage(reason: AuthFailure): string {
  switch (reason) {
    case "missing":
      return "authentication required";
    case "bad_mac":
      return "wrong key";
    case "stale":
      return "timestamp out of window (clock skew?)";
    case "replay":
      return "replayed request";
  }
}

/**
 * Remembers (timestamp, nonce) pairs seen within the window. Pairs older than the window
 * are forgotten (their timestamps are refused anyway); when the memory is full, the oldest are
 * forgotten early and the refusal horizon moves up to them, so a replay is never accepted,
 * at worst a very late legitimate request is refused.
 */
export class ReplayGuard {
  #windowMs: number;
  #max: number;
  #seen = new Set<string>();
  /** Insertion order = timestamp order, roughly: pruned from the front. */
  #order: { ts: number; key: string }[] = [];
  #head = 0;
  #floor = -Infinity;

  /** Remembers up to `max` pairs for `windowMs`. */
  constructor(windowMs: number, max: number) {
    this.#windowMs = windowMs;
    this.#max = max;
  }

  /** Number of pairs remembered. */
  get size(): number {
    return this.#seen.size;
  }

  /** True the first time a pair is presented (and it is not below the horizon). */
  firstUse(timestamp: number, nonce: bigint, now: number): boolean {
    this.#prune(now - this.#windowMs);
    if (timestamp <= this.#floor) return false;
    const key = `${timestamp}:${nonce}`;
    if (this.#seen.has(key)) return false;
    if (this.#seen.size >= this.#max) {
      const oldest = this.#order[this.#head];
      this.#floor = Math.max(this.#floor, oldest.ts);
      this.#prune(this.#floor + 1);
      if (timestamp <= this.#floor) return false;
    }
    this.#seen.add(key);
    this.#order.push({ ts: timestamp, key });
    return true;
  }

  /**
   * Forgets pairs with timestamps below `before`, and refuses those timestamps from now on:
   * should the clock step back, a forgotten pair must not become acceptable again.
   */
  #prune(before: number): void {
    this.#floor = Math.max(this.#floor, before - 1);
    while (this.#head < this.#order.length && this.#order[this.#head].ts < before) {
      this.#seen.delete(this.#order[this.#head++].key);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#order.length) {
      this.#order = this.#order.slice(this.#head);
      this.#head = 0;
    }
  }
}

function mac(key: Uint8Array, bytes: Uint8Array): Uint8Array {
  const h = createHmac("sha256", key).update(bytes).digest();
  return new Uint8Array(h.buffer, h.byteOffset, TAG_SIZE);
}

/**
 * Reads a key file: its bytes, without a trailing newline. Throws a usage error (exit 2) when
 * it is unreadable or shorter than `MIN_KEY_BYTES`.
 */
export async function readKeyFile(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    const why = (e as Error).message.split("\n")[0];
    throw new UdpgetError(ExitCode.Usage, `cannot read secret file ${path}: ${why}`);
  }
  let end = bytes.length;
  while (end > 0 && (bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d)) end--;
  if (end < MIN_KEY_BYTES) {
    const why = `key shorter than ${MIN_KEY_BYTES} bytes`;
    throw new UdpgetError(ExitCode.Usage, `secret file ${path}: ${why}`);
  }
  return bytes.slice(0, end);
}
