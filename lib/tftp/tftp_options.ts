/**
 * TFTP option negotiation for read requests (RFC 2347): which of the client's options the
 * server accepts, with which values, and what the transfer then uses. Pure.
 *
 * - `blksize` (RFC 2348): 8..65464; a larger request is answered with 65464.
 * - `timeout` (RFC 2349): 1..255 seconds, the server's retransmission timeout, echoed as is.
 * - `tsize` (RFC 2349): answered with the file size, in octet mode only (a netascii size is not
 *   known before the file is converted; tftpd-hpa does the same), and not for an empty file:
 *   curl refuses an OACK with `tsize 0` (so it cannot fetch empty files from tftpd-hpa).
 * - `windowsize` (RFC 7440): 1..65535 asked, at most `MAX_WINDOWSIZE` and at most
 *   `MAX_WINDOW_BYTES / blksize` granted (the server may answer a lower value).
 *
 * Option names are case-insensitive; the reply uses the client's spelling. Unknown options,
 * malformed values and repeats of an option are ignored (the first one counts), so odd
 * requests degrade to a plain RFC 1350 transfer rather than an error.
 *
 * @module
 */

import { DEFAULT_BLKSIZE, type TftpOption } from "./tftp_packet.ts";

/** Smallest `blksize` (RFC 2348). */
export const MIN_BLKSIZE = 8;

/** Largest `blksize` (RFC 2348): 65464 data bytes + 4 header + 28 IP/UDP = 65496. */
export const MAX_BLKSIZE = 65464;

/** Largest `windowsize` granted: blocks sent per ACK. */
export const MAX_WINDOWSIZE = 64;

/** Largest window in bytes (`windowsize × blksize`): bounds the buffers of one transfer. */
export const MAX_WINDOW_BYTES = 256 * 1024;

/** Retransmission timeout when the client does not ask for one (ms). */
export const DEFAULT_TIMEOUT_MS = 1000;

/** A supported transfer mode. */
export type TransferMode = "octet" | "netascii";

/** What a read transfer uses after negotiation. */
export interface Negotiated {
  /** Data bytes per block. */
  blksize: number;
  /** Blocks sent before waiting for an ACK (1: RFC 1350 lock-step). */
  windowsize: number;
  /** Retransmission timeout (ms). */
  timeoutMs: number;
  /** The options to acknowledge in an OACK, in request order; empty: no OACK, start with DATA. */
  accepted: TftpOption[];
}

/** The transfer mode named by a request (case-insensitive), or undefined if unsupported. */
export function parseMode(mode: string): TransferMode | undefined {
  const m = mode.toLowerCase();
  return m === "octet" || m === "netascii" ? m : undefined;
}

/** A decimal option value, or undefined if it is not one (at most 10 digits). */
function decimal(value: string): number | undefined {
  return /^[0-9]{1,10}$/.test(value) ? Number(value) : undefined;
}

/**
 * Negotiates a read request's `options` for a file of `size` bytes in `mode`. Never throws; the
 * values returned are always within the limits above.
 */
export function negotiate(
  options: readonly TftpOption[],
  mode: TransferMode,
  size: number,
): Negotiated {
  let blksize = DEFAULT_BLKSIZE;
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  let askedWindow: number | undefined;
  const seen = new Set<string>();
  const accepted: TftpOption[] = [];
  let windowAt = -1;
  for (const o of options) {
    const name = o.name.toLowerCase();
    if (seen.has(name)) continue;
    const v = decimal(o.value);
    if (v === undefined) continue;
    switch (name) {
      case "blksize":
        if (v < MIN_BLKSIZE) continue;
        blksize = Math.min(v, MAX_BLKSIZE);
        accepted.push({ name: o.name, value: String(blksize) });
        break;
      case "timeout":
        if (v < 1 || v > 255) continue;
        timeoutMs = v * 1000;
        accepted.push({ name: o.name, value: String(v) });
        break;
      case "tsize":
        // curl (7.88) rejects "tsize 0" in an OACK and fails on empty files: leave it out
        if (mode !== "octet" || size === 0) continue;
        accepted.push({ name: o.name, value: String(size) });
        break;
      case "windowsize":
        if (v < 1 || v > 65535) continue;
        askedWindow = v;
        windowAt = accepted.length;
        accepted.push({ name: o.name, value: "" }); // filled in once blksize is known
        break;
      default:
        continue;
    }
    seen.add(name);
  }
  let windowsize = 1;
  if (askedWindow !== undefined) {
    const byBytes = Math.max(1, Math.floor(MAX_WINDOW_BYTES / blksize));
    windowsize = Math.min(askedWindow, MAX_WINDOWSIZE, byBytes);
    accepted[windowAt] = { name: accepted[windowAt].name, value: String(windowsize) };
  }
  return { blksize, windowsize, timeoutMs, accepted };
}
