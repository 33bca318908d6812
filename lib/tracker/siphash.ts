/**
 * SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed pseudo-random function with a 128-bit key
 * and a 64-bit output, designed for short inputs. The tracker's connection ids use it instead of
 * `node:crypto`'s HMAC because an HMAC costs about 17 µs per call in Deno (object set-up, not
 * hashing), so checking a forged id against three time slots would cost ~50 µs: a flood of
 * 20 000 forged announces a second would fill a core. SipHash in plain JavaScript costs well under
 * a microsecond, and its 64-bit output is exactly a BEP 15 connection id (an HMAC would be cut to
 * those 64 bits anyway).
 *
 * 64-bit words are held as two unsigned 32-bit halves; all arithmetic is modulo 2^64.
 *
 * @module
 */

/** Bytes of a SipHash key. */
export const SIPHASH_KEY_SIZE = 16;

/** The four state words, as high and low halves. */
class State {
  h0 = 0;
  l0 = 0;
  h1 = 0;
  l1 = 0;
  h2 = 0;
  l2 = 0;
  h3 = 0;
  l3 = 0;

  /** One SipRound (rotations written out: no temporary arrays on this hot path). */
  round(): void {
    let h0 = this.h0, l0 = this.l0, h1 = this.h1, l1 = this.l1;
    let h2 = this.h2, l2 = this.l2, h3 = this.h3, l3 = this.l3;
    let lo: number, t: number;
    // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
    lo = (l0 + l1) >>> 0;
    h0 = (h0 + h1 + (lo < l0 ? 1 : 0)) >>> 0;
    l0 = lo;
    t = h1;
    h1 = ((h1 << 13) | (l1 >>> 19)) ^ h0;
    l1 = ((l1 << 13) | (t >>> 19)) ^ l0;
    t = h0;
    h0 = l0;
    l0 = t;
    // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
    lo = (l2 + l3) >>> 0;
    h2 = (h2 + h3 + (lo < l2 ? 1 : 0)) >>> 0;
    l2 = lo;
    t = h3;
    h3 = (((h3 << 16) | (l3 >>> 16)) ^ h2) >>> 0;
    l3 = (((l3 << 16) | (t >>> 16)) ^ l2) >>> 0;
    // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
    lo = (l0 + l3) >>> 0;
    h0 = (h0 + h3 + (lo < l0 ? 1 : 0)) >>> 0;
    l0 = lo;
    t = h3;
    h3 = (((h3 << 21) | (l3 >>> 11)) ^ h0) >>> 0;
    l3 = (((l3 << 21) | (t >>> 11)) ^ l0) >>> 0;
    // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    h1 >>>= 0;
    l1 >>>= 0;
    lo = (l2 + l1) >>> 0;
    h2 = (h2 + h1 + (lo < l2 ? 1 : 0)) >>> 0;
    l2 = lo;
    t = h1;
    h1 = (((h1 << 17) | (l1 >>> 15)) ^ h2) >>> 0;
    l1 = (((l1 << 17) | (t >>> 15)) ^ l2) >>> 0;
    this.h0 = h0;
    this.l0 = l0;
    this.h1 = h1;
    this.l1 = l1;
    this.h2 = l2;
    this.l2 = h2;
    this.h3 = h3;
    this.l3 = l3;
  }

  /** Absorbs one 64-bit message word (`hi`, `lo`) with two rounds. */
  absorb(hi: number, lo: number): void {
    this.h3 = (this.h3 ^ hi) >>> 0;
    this.l3 = (this.l3 ^ lo) >>> 0;
    this.round();
    this.round();
    this.h0 = (this.h0 ^ hi) >>> 0;
    this.l0 = (this.l0 ^ lo) >>> 0;
  }
}

/** Reads 32 bits little-endian at `at`, zero beyond `end`. */
function le32(b: Uint8Array, at: number, end: number): number {
  if (at + 4 <= end) {
    return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
  }
  let v = 0;
  for (let i = 3; i >= 0; i--) v = (v << 8) | (at + i < end ? b[at + i] : 0);
  return v >>> 0;
}

/** SipHash-2-4 under one key (the key's words are read once). */
export class SipHash {
  #k0h: number;
  #k0l: number;
  #k1h: number;
  #k1l: number;
  /** Reused by every call: hashing is synchronous, so calls never overlap. */
  #s = new State();

  /** `key`: 16 bytes. */
  constructor(key: Uint8Array) {
    if (key.length !== SIPHASH_KEY_SIZE) throw new RangeError("SipHash takes a 16-byte key");
    this.#k0l = le32(key, 0, 16);
    this.#k0h = le32(key, 4, 16);
    this.#k1l = le32(key, 8, 16);
    this.#k1h = le32(key, 12, 16);
  }

  /** The hash of `message`: 8 bytes, little-endian, as the reference implementation writes it. */
  hash(message: Uint8Array): Uint8Array {
    const s = this.#s;
    s.h0 = (this.#k0h ^ 0x736f6d65) >>> 0;
    s.l0 = (this.#k0l ^ 0x70736575) >>> 0;
    s.h1 = (this.#k1h ^ 0x646f7261) >>> 0;
    s.l1 = (this.#k1l ^ 0x6e646f6d) >>> 0;
    s.h2 = (this.#k0h ^ 0x6c796765) >>> 0;
    s.l2 = (this.#k0l ^ 0x6e657261) >>> 0;
    s.h3 = (this.#k1h ^ 0x74656462) >>> 0;
    s.l3 = (this.#k1l ^ 0x79746573) >>> 0;
    const n = message.length;
    const whole = n - (n % 8);
    for (let at = 0; at < whole; at += 8) s.absorb(le32(message, at + 4, n), le32(message, at, n));
    // the last word: the remaining bytes, and the length's low byte on top
    s.absorb((le32(message, whole + 4, n) | ((n & 0xff) << 24)) >>> 0, le32(message, whole, n));
    s.l2 = (s.l2 ^ 0xff) >>> 0;
    for (let i = 0; i < 4; i++) s.round();
    const hi = s.h0 ^ s.h1 ^ s.h2 ^ s.h3;
    const lo = s.l0 ^ s.l1 ^ s.l2 ^ s.l3;
    return new Uint8Array([lo, lo >>> 8, lo >>> 16, lo >>> 24, hi, hi >>> 8, hi >>> 16, hi >>> 24]);
  }
}
