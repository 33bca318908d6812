/**
 * The server's decisions that do not touch a socket or a file: whether a chunk request may
 * be answered and how many hashes fit in a reply. (Transfers: `transfer_log.ts`.)
 *
 * @module
 */

import { type ChunkRequest, ErrorCode, HASHES_PER_REPLY, MAX_BLOCK_SIZE } from "../wire/packet.ts";

/** Longest range one request may ask for (bounds the work a single datagram can trigger). */
export const MAX_REQUEST_BYTES = 16 << 20;

/**
 * Most datagrams one request may trigger. Without it a 50-byte request for 16 MiB in 1-byte
 * blocks would keep the server sending for minutes (found by the fuzz test).
 */
export const MAX_BLOCKS_PER_REQUEST = 1024;

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
