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
import { formatBytes } from "../cli/format.ts";

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
