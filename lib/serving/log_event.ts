/**
 * Structured log events of `udpget serve` and their rendering as one line each: `text` (an
 * ISO timestamp and a human sentence, the historical format) or `json` (one object per line,
 * for log shippers). Pure: the timestamp comes in as an argument.
 *
 * @module
 */

/** How serious an event is. */
export type LogLevel = "info" | "warn" | "error";

/** The output formats of `serve --log-format`. */
export type LogFormat = "text" | "json";

/** A value a log field may hold (kept flat so every log shipper can index it). */
export type LogValue = string | number | boolean | null;

/** One thing worth a log line. */
export interface LogEvent {
  level: LogLevel;
  /** Stable machine name, e.g. `transfer_start`, `refused`, `hashed`. */
  event: string;
  /** The human sentence (the whole line in `text` format, after the timestamp). */
  msg: string;
  /** Machine-readable details; in `text` format they are already part of `msg`. */
  fields?: Record<string, LogValue>;
}

/** Where the server sends its events. */
export type LogSink = (e: LogEvent) => void;

/**
 * Renders `e` at time `ts` as one line (no newline). JSON output never contains a raw newline
 * (JSON.stringify escapes them), so a client-chosen file name cannot forge a second line.
 */
export function formatLogLine(format: LogFormat, ts: Date, e: LogEvent): string {
  if (format === "json") {
    return JSON.stringify({
      ts: ts.toISOString(),
      level: e.level,
      event: e.event,
      msg: e.msg,
      fields: e.fields ?? {},
    });
  }
  const prefix = e.level === "info" ? "" : `${e.level}: `;
  return `${ts.toISOString()} ${prefix}${e.msg}`;
}

/** A sink writing each event as one line through `out`, stamped with `clock()`. */
export function lineSink(
  format: LogFormat,
  out: (line: string) => void,
  clock: () => Date = () => new Date(),
): LogSink {
  return (e) => out(formatLogLine(format, clock(), e));
}

/** A plain informational event (for shells whose messages are free text, e.g. TFTP). */
export function info(event: string, msg: string, fields?: Record<string, LogValue>): LogEvent {
  return { level: "info", event, msg, fields };
}
