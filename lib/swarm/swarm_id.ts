/**
 * Swarm identity (PROTOCOL.md §10.1): the 20-byte info-hash under which the peers of one version
 * of one file meet at a tracker. It is derived from the trusted metadata — size, piece size,
 * whole-file digest and piece-hash root — so that only peers holding the same content *cut the
 * same way* meet (a piece index means the same bytes to all of them), and names play no part.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { DIGEST_SIZE } from "../wire/packet.ts";

/** Bytes of an info-hash (BEP 15 carries 20). */
export const INFO_HASH_SIZE = 20;

/** Domain separation: no other udpget hash input starts with these bytes. */
const LABEL = new TextEncoder().encode("udpget swarm v1\0");

/** The metadata a swarm is the swarm of. */
export interface SwarmMetadata {
  size: number;
  pieceSize: number;
  digest: Uint8Array;
  piecesRoot: Uint8Array;
}

/**
 * The info-hash: the first 20 bytes of SHA-256(label ‖ size u64 ‖ piece_size u32 ‖ digest ‖
 * pieces_root), integers big-endian. Throws RangeError on a digest or root of the wrong size.
 */
export function swarmId(m: SwarmMetadata): Uint8Array {
  if (m.digest.length !== DIGEST_SIZE || m.piecesRoot.length !== DIGEST_SIZE) {
    throw new RangeError("digest and pieces root must be 32 bytes");
  }
  const numbers = new Uint8Array(12);
  const view = new DataView(numbers.buffer);
  view.setBigUint64(0, BigInt(m.size));
  view.setUint32(8, m.pieceSize);
  const h = createHash("sha256").update(LABEL).update(numbers).update(m.digest)
    .update(m.piecesRoot).digest();
  return new Uint8Array(h.buffer, h.byteOffset, INFO_HASH_SIZE).slice();
}

/** Lower-case hex, as opentracker's whitelist and `udpget swarm-id` print it. */
export function infoHashHex(id: Uint8Array): string {
  return Array.from(id, (b) => b.toString(16).padStart(2, "0")).join("");
}
