/**
 * The line a fetch ends with: what was saved, how big, how long and how fast (in figures that
 * divide), how it was verified, and who delivered it. Short enough for one line of a terminal in
 * the common case: details (block size, per-server rates) are in `--json`.
 *
 * @module
 */

import { formatBytes, formatRate } from "../base/format.ts";

/** What the summary says. */
export interface FetchSummaryFacts {
  /** Where the file went ("stdout" for `-o -`). */
  out: string;
  size: number;
  /** Bytes an earlier run had verified (not fetched again). */
  resumed: number;
  /** Bytes fetched in this run. */
  fetched: number;
  /** Time of this run (ms), from the start (or the prompted name) to the end. */
  ms: number;
  /** Part of `ms` spent waiting for the servers to hash the file. */
  hashWaitMs: number;
  /** How it was verified, e.g. "256 pieces verified (SHA-256)". */
  verified: string;
  /** Bytes asked for again (losses). */
  rerequested: number;
  /** Bytes each source delivered. */
  sources: { label: string; bytes: number }[];
}

/** The summary line. */
export function fetchSummary(f: FetchSummaryFacts): string {
  return `udpget: ${f.out}: ${summaryFigures(f.size, f.resumed, f.fetched, f.ms, f.hashWaitMs)}` +
    `, ${f.verified}${summaryRerequested(f.rerequested, f.fetched)}${summarySources(f.sources)}`;
}

/**
 * Size, time and rate, in figures that divide: the rate is the bytes fetched in this run over
 * the time given; resumed bytes are named apart, and so is a wait for the servers' hashing.
 */
export function summaryFigures(
  size: number,
  resumed: number,
  fetched: number,
  ms: number,
  hashWaitMs = 0,
): string {
  const secs = Math.max(ms, 1) / 1000;
  const hashing = hashWaitMs > 0
    ? `, ${(hashWaitMs / 1000).toFixed(2)} s of it waiting for servers to hash`
    : "";
  const time = `${secs.toFixed(2)} s (${formatRate(fetched / secs)}${hashing})`;
  if (resumed === 0) return `${formatBytes(size)} in ${time}`;
  return `${formatBytes(size)}: ${formatBytes(resumed)} resumed, ${formatBytes(fetched)} ` +
    `fetched in ${time}`;
}

/** Re-requested bytes, said only when they were more than 1 % of what was fetched. */
export function summaryRerequested(rerequested: number, fetched: number): string {
  return rerequested > 0.01 * fetched ? `; re-requested ${formatBytes(rerequested)}` : "";
}

/** Who delivered what; servers that delivered nothing are left out. */
export function summarySources(sources: { label: string; bytes: number }[]): string {
  const total = sources.reduce((sum, s) => sum + s.bytes, 0);
  const used = sources.filter((s) => s.bytes > 0);
  if (used.length === 0) return "";
  if (used.length === 1) return `; from ${used[0].label}`;
  const shares = used.map((s) => `${s.label} ${((100 * s.bytes) / total).toFixed(0)}%`);
  return `; from ${shares.join(", ")}`;
}
