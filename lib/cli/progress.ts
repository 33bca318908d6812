/**
 * The fetch progress line, as curl and aria2c show one: the file, how far, the current rate
 * (over a moving window of bytes fetched in this run, never counting bytes resumed from an
 * earlier run), the ETA at that rate, and the servers still in use. The line always fits the
 * terminal: it is truncated, never wrapped (a wrapped line leaves a new line at every redraw).
 *
 * Pure: the renderer takes the state and a width. (The rate comes from `rate_window.ts`; this
 * module is loaded only when a line is shown: its text-width packages cost ~40 ms at start.)
 *
 * @module
 */

import cliTruncate from "cli-truncate";
import stringWidth from "string-width";
import { formatBytes, formatDuration, formatRate } from "../base/format.ts";

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

/** A part of the line after the name, and the order parts are given up in (highest first). */
interface Field {
  text: string;
  /** 1: kept longest. */
  priority: number;
}

/** Name columns kept before a field is given up for them. */
const MIN_NAME = 16;

/**
 * The progress line for `v`, at most `width` columns wide. When it does not fit, whole fields
 * go first, least useful first (resumed, servers, sizes, ETA), as curl and aria2c drop fields;
 * the name is shortened (in its middle) only down to a readable part; the percentage and the
 * rate go last.
 */
export function renderProgress(v: ProgressView, width: number): string {
  const name = v.name;
  let fields = v.phase === "hashing" ? hashingFields(v) : transferFields(v);
  const cols = (fs: Field[]) => fs.reduce((n, f) => n + 2 + stringWidth(f.text), 0);
  const nameRoom = Math.min(stringWidth(name), MIN_NAME);
  while (fields.length > 1 && nameRoom + cols(fields) > width) {
    const drop = Math.max(...fields.map((f) => f.priority));
    fields = fields.filter((f) => f.priority !== drop);
  }
  const rest = fields.map((f) => f.text).join("  ");
  const room = Math.max(1, width - 2 - stringWidth(rest));
  const line = `${cliTruncate(name, room, { position: "middle" })}  ${rest}`;
  return cliTruncate(line, Math.max(1, width), { position: "end" });
}

function transferFields(v: TransferView): Field[] {
  const have = v.fetched + v.resumed;
  const pct = v.total === 0 ? 100 : (100 * have) / v.total;
  const eta = v.rate > 0 ? (v.total - have) / v.rate : Infinity;
  const fields = [
    { text: `${pct.toFixed(1)}%`, priority: 1 },
    { text: `${formatBytes(have)} / ${formatBytes(v.total)}`, priority: 4 },
    { text: formatRate(v.rate), priority: 2 },
    { text: `ETA ${formatDuration(eta)}`, priority: 3 },
    { text: `servers ${v.alive}/${v.servers}`, priority: 5 },
  ];
  if (v.resumed > 0) fields.push({ text: `(${formatBytes(v.resumed)} resumed)`, priority: 6 });
  return fields;
}

function hashingFields(v: HashingView): Field[] {
  const pct = v.done !== undefined && v.total ? ` ${((100 * v.done) / v.total).toFixed(0)}%` : "";
  return [
    { text: `servers hashing the file${pct}`, priority: 1 },
    { text: `(${v.busy} of ${v.servers} busy)`, priority: 3 },
    { text: formatDuration(v.elapsedMs / 1000), priority: 2 },
  ];
}
