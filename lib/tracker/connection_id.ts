/**
 * Stateless BEP 15 connection ids: the id handed to a source address is a keyed hash of that
 * address and the current minute, under a random per-process key, as the server's
 * address-validation cookies (`lib/wire/cookie.ts`) are. Nothing is stored per client, so a flood
 * of connect requests costs no memory, and an id can be neither guessed nor carried to another
 * address.
 *
 * The hash is SipHash-2-4 rather than the cookies' HMAC-SHA256: its 64-bit output is exactly an
 * id, and it costs about 1 µs where Deno's HMAC costs about 17 µs, which matters because every
 * announce (forged ones included) is checked against up to three minutes (see `siphash.ts`).
 *
 * BEP 15 asks trackers to accept an id until two minutes after sending it. An id is accepted
 * while the clock is in its minute or one of the two after: at least 120 s after it was issued,
 * less than 180 s.
 *
 * Pure apart from hashing: the key and the clock are injected.
 *
 * @module
 */

import { SipHash, SIPHASH_KEY_SIZE } from "./siphash.ts";

/** Bytes of a connection id. */
export const CONNECTION_ID_SIZE = 8;

/** Length of a time slot (ms): an id stays the same for a source within one. */
export const CONNECTION_ID_SLOT_MS = 60_000;

/** An id is accepted for at least this long after it was issued (BEP 15: two minutes). */
export const CONNECTION_ID_LIFETIME_MS = 2 * CONNECTION_ID_SLOT_MS;

/** Bytes of the key {@linkcode ConnectionIds} takes. */
export const CONNECTION_ID_KEY_SIZE = SIPHASH_KEY_SIZE;

/** Issues and checks connection ids with one key. */
export class ConnectionIds {
  #hash: SipHash;
  /** The hashed message, reused: the slot (4 bytes, big-endian), then the address (4 or 16). */
  #msg4 = new Uint8Array(8);
  #msg16 = new Uint8Array(20);

  /** `key`: 16 random bytes kept for the tracker's lifetime (ids die with the process). */
  constructor(key: Uint8Array) {
    this.#hash = new SipHash(key);
  }

  /** The id for the source `address` (4 or 16 bytes) at `now` (ms). */
  issue(address: Uint8Array, now: number): Uint8Array {
    return this.#id(address, Math.floor(now / CONNECTION_ID_SLOT_MS));
  }

  /** Whether `id` was issued to `address` in the slot of `now` or one of the two before. */
  valid(id: Uint8Array, address: Uint8Array, now: number): boolean {
    if (id.length !== CONNECTION_ID_SIZE) return false;
    const slot = Math.floor(now / CONNECTION_ID_SLOT_MS);
    for (let back = 0; back * CONNECTION_ID_SLOT_MS <= CONNECTION_ID_LIFETIME_MS; back++) {
      if (equal(id, this.#id(address, slot - back))) return true;
    }
    return false;
  }

  #id(address: Uint8Array, slot: number): Uint8Array {
    const msg = address.length === 4 ? this.#msg4 : this.#msg16;
    msg[0] = slot >>> 24;
    msg[1] = slot >>> 16;
    msg[2] = slot >>> 8;
    msg[3] = slot;
    for (let i = 4; i < msg.length; i++) msg[i] = address[i - 4];
    return this.#hash.hash(msg);
  }
}

/** Constant-time comparison: how much of a forged id matched must not show in the timing. */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  let diff = 0;
  for (let i = 0; i < CONNECTION_ID_SIZE; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
