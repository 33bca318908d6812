/**
 * Hashing progress inside a BUSY error's message (PROTOCOL.md §4.1): a server still hashing
 * the file answers `hashing <done>/<total>` (bytes hashed so far / file size, decimal). The
 * message stays free text for old clients; new ones can show how far the server has got.
 *
 * @module
 */

/** How far a server has got hashing a file. */
export interface BusyProgress {
  /** Bytes hashed so far. */
  done: number;
  /** Size of the file (bytes). */
  total: number;
}

/** The BUSY message for `done` of `total` bytes hashed. */
export function formatBusyProgress(done: number, total: number): string {
  return `hashing ${Math.min(done, total)}/${total}`;
}

const PROGRESS = /^hashing (\d{1,16})\/(\d{1,16})(?:$|[^0-9/])/;

/**
 * The progress carried by a BUSY message, or `undefined` if it carries none (any other text,
 * or numbers that make no sense). Text after the numbers is allowed, for future additions.
 */
export function parseBusyProgress(message: string): BusyProgress | undefined {
  const m = PROGRESS.exec(message);
  if (!m) return undefined;
  const done = Number(m[1]);
  const total = Number(m[2]);
  if (!Number.isSafeInteger(done) || !Number.isSafeInteger(total) || done > total) {
    return undefined;
  }
  return { done, total };
}
