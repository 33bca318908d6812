/**
 * The fetch progress line, as curl and aria2c show one: the file, how far, the current rate
 * (over a moving window of bytes fetched in this run, never counting bytes resumed from an
 * earlier run), the ETA at that rate, and the servers still in use. The line always fits the
 * terminal: it is truncated, never wrapped (a wrapped line leaves a new line at every redraw).
 *
 * Pure: the renderer takes the state and a width; the rate window takes the time.
 *
 * @module
 */

import cliTruncate from "cli-truncate";
import { formatBytes, formatDuration, formatRate } from "./format.ts";

/** Seconds of history the current rate is measured over (aria2c and curl use a few). */
export const RATE_WINDOW_MS = 5000;

/** A moving-window rate: bytes counted over the last `windowMs`. */
export class RateWindow {
  #samples: { at: number; bytes: number }[] = [];

  /** An empty window over `windowMs` milliseconds. */
  constructor(readonly windowMs = RATE_WINDOW_MS) {}

  /** Records that `bytes` in total had been fetched at `now` (ms). */
  sample(now: number, bytes: number): void {
    this.#samples.push({ at: now, bytes });
    // keep one sample older than the window: the rate spans the whole window
    while (this.#samples.length > 2 && this.#samples[1].at <= now - this.windowMs) {
      this.#samples.shift();
    }
  }

  /** Bytes per second over the window, or 0 before two samples. */
  rate(): number {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || last.at <= first.at) return 0;
    return (1000 * (last.bytes - first.bytes)) / (last.at - first.at);
  }
}

/** The transfer phase of the progress line. */
export interface TransferView {
  phase: "transfer";
  name: string;
  total: number;
  /** Bytes fetched in this run. */
  fetched: number;
  /** Bytes verified by an earlier run (not fetched again). */
  resumed: number;
  /** Current rate (bytes per second) of this run's fetching. */
  rate: number;
  alive: number;
  servers: number;
}

/** The wait while servers hash the file (they answer BUSY). */
export interface HashingView {
  phase: "hashing";
  name: string;
  /** Servers still hashing the file, and their progress (bytes hashed of total). */
  busy: number;
  servers: number;
  done?: number;
  total?: number;
  elapsedMs: number;
}

/** What the progress line shows. */
export type ProgressView = TransferView | HashingView;

/** The progress line for `v`, at most `width` columns wide. */
export function renderProgress(v: ProgressView, width: number): string {
  const [name, rest] = v.phase === "hashing" ? hashingParts(v) : transferParts(v);
  // the figures matter more than the whole name: the name gives way first (in its middle)
  const room = Math.max(8, width - 2 - rest.length);
  const line = `${cliTruncate(name, room, { position: "middle" })}  ${rest}`;
  return cliTruncate(line, Math.max(1, width), { position: "end" });
}

function transferParts(v: TransferView): [string, string] {
  const have = v.fetched + v.resumed;
  const pct = v.total === 0 ? 100 : (100 * have) / v.total;
  const eta = v.rate > 0 ? (v.total - have) / v.rate : Infinity;
  const resumed = v.resumed > 0 ? `  (${formatBytes(v.resumed)} resumed)` : "";
  return [
    v.name,
    `${pct.toFixed(1)}%  ${formatBytes(have)} / ${formatBytes(v.total)}  ${formatRate(v.rate)}  ` +
    `ETA ${formatDuration(eta)}  servers ${v.alive}/${v.servers}${resumed}`,
  ];
}

function hashingParts(v: HashingView): [string, string] {
  const pct = v.done !== undefined && v.total ? ` ${((100 * v.done) / v.total).toFixed(0)}%` : "";
  return [
    v.name,
    `servers hashing the file${pct}  (${v.busy} of ${v.servers} busy)  ` +
    formatDuration(v.elapsedMs / 1000),
  ];
}
