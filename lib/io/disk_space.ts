/**
 * Room on the disk for a download, found before the first byte: a fetch that cannot fit should
 * say so at once, not after minutes of traffic (and never as if the servers had failed). The
 * free space is read with `statfs` (node:fs; Deno asks for `--allow-sys=statfs`); where that is
 * not allowed or not possible the check is skipped, and the write error, when it comes, still
 * ends the fetch as a local one (exit 6).
 *
 * @module
 */

import { statfs } from "node:fs/promises";
import { formatBytes } from "../base/format.ts";
import { C, type Libc } from "./udp/libc.ts";

/** Bytes an unprivileged process may still write where `path` lives; undefined if unknown. */
export async function freeBytes(path: string): Promise<number | undefined> {
  try {
    const s = await statfs(path);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined; // no permission (NotCapable), or a platform without statfs
  }
}

/**
 * Bytes a file of `size` still needs on disk when `allocated` bytes of it (or of the file it
 * replaces) are on disk already: a resumed `.part` needs only its holes.
 */
export function bytesNeeded(size: number, allocated: number): number {
  return Math.max(0, size - allocated);
}

/**
 * The one-line reason `needed` bytes for `path` do not fit in `free`, or undefined when they
 * fit or `free` is unknown.
 */
export function roomShortfall(
  path: string,
  needed: number,
  free: number | undefined,
): string | undefined {
  if (free === undefined || needed <= free) return undefined;
  return `not enough space for ${path}: ${formatBytes(needed)} needed, ${formatBytes(free)} free`;
}

/**
 * Allocates the blocks of the file at `path` up to `size` (fallocate(2), mode 0: holes filled,
 * data kept), so that the space is the download's before the first datagram and a full disk
 * shows now, not half-way. Returns the error that says the space is not there (no space, quota,
 * file too large), or undefined: done, or a file system that cannot preallocate (the writes
 * then find out).
 */
export function reserveSpace(libc: Libc, path: string, size: number): string | undefined {
  if (size === 0) return undefined;
  // O_NOFOLLOW: the `.part` was created without following links; a link swapped in since is
  // refused, never its target extended
  const flags = C.O_WRONLY | C.O_CLOEXEC | C.O_NOFOLLOW;
  const fd = libc.sym.open(new TextEncoder().encode(path + "\0"), flags);
  if (fd < 0) return libc.describe(libc.errno());
  try {
    if (libc.sym.fallocate(fd, 0, 0n, BigInt(size)) === 0) return undefined;
    const errno = libc.errno();
    const noRoom = errno === C.ENOSPC || errno === C.EDQUOT || errno === C.EFBIG;
    return noRoom ? libc.describe(errno) : undefined;
  } finally {
    libc.sym.close(fd);
  }
}
