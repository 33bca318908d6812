/**
 * Stateless address-validation cookies (as QUIC Retry, RFC 9000 §8.1): the server hands a
 * client a token bound to its IP address and the current minute, and answers only requests
 * that carry a valid one. Until then it sends nothing but a 26-byte RETRY, less than 3× any
 * request, so a spoofed source address cannot turn the server into an amplifier.
 *
 * Pure apart from hashing: the secret and the clock are injected.
 *
 * @module
 */

import { createHmac } from "node:crypto";
import { TOKEN_SIZE } from "./packet.ts";

/** How long a token stays valid: its minute and the next one. */
export const COOKIE_PERIOD_MS = 60_000;

/**
 * Tokens remembered at most. Every request is checked, and most come from a few addresses in
 * one period, so a remembered token saves an HMAC per request; a flood from many addresses only
 * empties the table more often (each new address costs the HMAC it cost before).
 */
const REMEMBERED_TOKENS = 1024;

/** Issues and checks tokens with one secret. */
export class CookieJar {
  #secret: Uint8Array;
  /** Tokens by `period|ip`, as computed. */
  #remembered = new Map<string, Uint8Array>();

  /** `secret`: random bytes, kept for the server's lifetime. */
  constructor(secret: Uint8Array) {
    this.#secret = secret;
  }

  /** A token for `ip` at time `now` (ms). */
  issue(ip: string, now: number): Uint8Array {
    return this.#mac(ip, Math.floor(now / COOKIE_PERIOD_MS)).slice(); // (the caller's own)
  }

  /** Whether `token` was issued to `ip` in this period or the previous one. */
  valid(token: Uint8Array, ip: string, now: number): boolean {
    const period = Math.floor(now / COOKIE_PERIOD_MS);
    return equal(token, this.#mac(ip, period)) || equal(token, this.#mac(ip, period - 1));
  }

  #mac(ip: string, period: number): Uint8Array {
    const input = `${period}|${ip}`;
    const known = this.#remembered.get(input);
    if (known) return known;
    const h = createHmac("sha256", this.#secret).update(input).digest();
    const token = new Uint8Array(h.buffer, h.byteOffset, TOKEN_SIZE);
    if (this.#remembered.size >= REMEMBERED_TOKENS) this.#remembered.clear();
    this.#remembered.set(input, token);
    return token;
  }
}

/** Constant-time comparison (the token is a secret-derived value). */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
