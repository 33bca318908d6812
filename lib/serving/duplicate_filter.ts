/**
 * Which requests are copies of one already answered: the same request (id and what it asks for)
 * from the same address and port within `DUPLICATE_WINDOW_MS`. A client sends each request twice on a lossy path (a
 * lost 60-byte request idles the link for its whole answer), and networks duplicate datagrams;
 * either way the server answers once (PROTOCOL.md §6.1). A client never reuses an id for a new
 * request that soon: a request asked again gets a new id.
 *
 * Bounded: a fixed table indexed by the id's low bits (ids are random), a newer request taking
 * an older one's slot. Forgetting a request early can only cost a duplicate answer, as before.
 * Pure: the time comes in as an argument.
 *
 * @module
 */

import type { RequestPacket } from "../wire/packet.ts";

/** How long a request id is remembered (ms): the copies of one request arrive together. */
export const DUPLICATE_WINDOW_MS = 2000;
/** Slots of the table (a power of two). */
const SLOTS = 8192;

/** Remembers recent requests by id, address and port. */
export class DuplicateFilter {
  #ids = new Uint32Array(SLOTS);
  #ports = new Uint16Array(SLOTS);
  #hosts = new Uint32Array(SLOTS);
  #keys = new Uint32Array(SLOTS);
  #at = new Float64Array(SLOTS).fill(-Infinity);

  /**
   * True if this request was seen from `host`:`port` within the window; else remembers it.
   * `what` tells requests apart that share an id (see `requestKey`).
   */
  seen(requestId: number, what: number, host: string, port: number, now: number): boolean {
    const slot = requestId & (SLOTS - 1);
    const h = fnv1a(host);
    if (
      this.#ids[slot] === requestId >>> 0 && this.#keys[slot] === what >>> 0 &&
      this.#ports[slot] === port && this.#hosts[slot] === h &&
      now - this.#at[slot] < DUPLICATE_WINDOW_MS
    ) return true;
    this.#ids[slot] = requestId;
    this.#keys[slot] = what;
    this.#ports[slot] = port;
    this.#hosts[slot] = h;
    this.#at[slot] = now;
    return false;
  }
}

/** What a request asks for, hashed: two copies of one request have the same key. */
export function requestKey(p: RequestPacket): number {
  // (numbers mixed directly: this runs for every request, and a template string would allocate)
  switch (p.type) {
    case "meta_request":
      return fnv1a(p.name);
    case "hashes_request":
      return mix(mix(0x68, p.firstPiece), p.count);
    case "chunk_request":
      return mix(mix(mix(mix(0x63, p.offset), p.offset / 0x1_0000_0000), p.length), p.blockSize);
    case "have_request":
      return mix(mix(0x76, p.since), p.firstPiece);
    case "peers_request":
      return 0x70;
  }
}

/**
 * One step of a multiplicative hash over a 32-bit word (a larger number gives its low word: the
 * offset's high word is mixed in separately). The file is left out: a client's copy of a request
 * names the same one, and one id asking two files is two requests only in theory.
 */
function mix(h: number, word: number): number {
  return Math.imul(h ^ (word >>> 0), 0x01000193) >>> 0;
}

/** FNV-1a of a text: a collision would also need the same id, address and port. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
