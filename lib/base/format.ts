/**
 * Human-readable sizes, rates and durations for progress and summary lines.
 *
 * @module
 */

import prettyBytes from "pretty-bytes";

/** `1.18 MiB`: binary units, as file sizes are usually counted. */
export function formatBytes(n: number): string {
  return prettyBytes(n, { binary: true, maximumFractionDigits: 1 });
}

/** `12.3 MiB/s`. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.max(0, bytesPerSecond))}/s`;
}

/** `0:07`, `1:02:03`, or `--:--` when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/**
 * Formats an address for messages: "127.0.0.1:9000", "[::1]:9000", "example.com:9000".
 *
 * IPv6 hosts (anything containing ":") get brackets so the port stays unambiguous.
 */
export function formatServer(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
