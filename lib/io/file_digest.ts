/**
 * Content digests of a served file: SHA-256 of the whole file and of every piece, in one
 * pass, plus the root that lets a client check a list of piece hashes against agreed metadata.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Digests of one version of a file. */
export interface FileDigest {
  /** Bytes hashed. */
  size: number;
  /** Piece size used for `pieceHashes`. */
  pieceSize: number;
  /** SHA-256 of the whole file. */
  digest: Uint8Array;
  /** SHA-256 of each piece, concatenated (32 bytes per piece). */
  pieceHashes: Uint8Array;
  /** SHA-256 of `pieceHashes`. */
  piecesRoot: Uint8Array;
}

/** SHA-256 of some bytes. */
export function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

const READ_SIZE = 1 << 20;

/**
 * Hashes `size` bytes of an open file from offset 0. Reads in 1 MiB steps and yields to the
 * event loop between them, so a server keeps answering while a large file is being hashed.
 * Throws if the file turns out shorter than `size` (it changed under us). `onProgress` gets the
 * bytes hashed so far after each read (at most once per MiB, so it costs nothing measurable).
 */
export async function digestFile(
  file: Deno.FsFile,
  size: number,
  pieceSize: number,
  onProgress?: (done: number) => void,
): Promise<FileDigest> {
  const whole = createHash("sha256");
  const pieceCount = Math.ceil(size / pieceSize);
  const pieceHashes = new Uint8Array(pieceCount * 32);
  // sized to the file: a 1 MiB buffer for each of 10 000 small files kept a server at 150 MiB
  const buf = new Uint8Array(Math.max(1, Math.min(READ_SIZE, pieceSize, size)));
  await file.seek(0, Deno.SeekMode.Start);
  let done = 0;
  for (let piece = 0; piece < pieceCount; piece++) {
    const h = createHash("sha256");
    let left = Math.min(pieceSize, size - piece * pieceSize);
    while (left > 0) {
      const n = await file.read(buf.subarray(0, Math.min(buf.length, left)));
      if (n === null || n === 0) throw new Error("file shrank while being hashed");
      const chunk = buf.subarray(0, n);
      h.update(chunk);
      whole.update(chunk);
      left -= n;
      done += n;
      onProgress?.(done);
    }
    pieceHashes.set(h.digest(), piece * 32);
  }
  return {
    size,
    pieceSize,
    digest: new Uint8Array(whole.digest()),
    pieceHashes,
    piecesRoot: sha256(pieceHashes),
  };
}

/** A function computing a file's digests: `digestFile`, or a stand-in in tests. */
export type DigestFn = typeof digestFile;

/** Largest piece a server picks by itself: 1 MiB pieces keep the hash list at 32 B per MiB. */
export const DEFAULT_PIECE_SIZE = 1 << 20;
/** Smallest piece a server picks by itself. */
export const MIN_AUTO_PIECE_SIZE = 256 << 10;
/** Pieces a file is cut into at most, until pieces reach 1 MiB. */
const MAX_AUTO_PIECES = 512;

/**
 * The piece size of a `size`-byte file when the server was given none: the smallest power of
 * two from 256 KiB up that cuts it into at most 512 pieces, and 1 MiB at most. So 256 KiB up to
 * 128 MiB, 512 KiB up to 256 MiB, 1 MiB above (as every file before). Pieces are the unit a
 * swarm relays, and a peer serves only what it verified: a small file in big pieces reaches the
 * last fetcher one slow piece at a time (measured: 128 MiB to 8 fetchers from an 8 MiB/s server,
 * 0.6 s sooner in 256 KiB pieces than in 1 MiB ones).
 */
export function autoPieceSize(size: number): number {
  let p = MIN_AUTO_PIECE_SIZE;
  while (p < DEFAULT_PIECE_SIZE && p * MAX_AUTO_PIECES < size) p *= 2;
  return p;
}
