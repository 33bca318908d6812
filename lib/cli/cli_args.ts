/**
 * Command-line parsing for `udpget serve` and `udpget fetch` (node:util parseArgs), turning
 * every mistake into a one-line usage error.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ExitCode, UdpgetError } from "./exit.ts";
import { MAX_BLOCK_SIZE } from "../wire/packet.ts";
import { DEFAULT_PIECE_SIZE } from "../io/file_digest.ts";
import { parseRate } from "../engine/token_bucket.ts";

/** Usage text printed by `--help` and after usage errors. */
export const USAGE = `usage:
  udpget serve <port> [--root DIR] [--host ADDR] [--rate BYTES/S] [--secret-file F]
               [--tftp PORT] [--log-format text|json] [--cache-dir DIR | --no-cache]
  udpget fetch <servers.txt> <connections> [<file>] [-o OUT] [--force] [--quiet]
               [--block-size auto|N] [--limit BYTES/S] [--verify full|pieces]
               [--checksum sha256=HEX] [--secret-file F]
  rates take k, M, G suffixes (powers of 1000) or Ki, Mi, Gi (powers of 1024): 20M, 500k
  udpget --help | --version`;

/** Options of `udpget serve`. */
export interface ServeArgs {
  port: number;
  root: string;
  host: string;
  pieceSize: number;
  /** Bytes per second this server sends at most, over all clients; undefined: no cap. */
  rate?: number;
  /** Shared-key file: only requests authenticated with that key are answered. */
  secretFile?: string;
  /** UDP port to also answer TFTP read requests on (`--tftp`); undefined: no TFTP. */
  tftp?: number;
  /** Log lines as text (ISO timestamp + message) or one JSON object each (`--log-format`). */
  logFormat: "text" | "json";
  /** Digest cache directory (`--cache-dir`); undefined: the default under $XDG_CACHE_HOME/$HOME. */
  cacheDir?: string;
  /** No persistent digest cache (`--no-cache`). */
  noCache: boolean;
}

/** Options of `udpget fetch`. */
export interface FetchArgs {
  serversFile: string;
  connections: number;
  /** Undefined: ask on the terminal. */
  file?: string;
  /** Undefined: basename of `file` in the current directory. */
  output?: string;
  force: boolean;
  quiet: boolean;
  /** Data bytes per datagram, or "auto" to probe the path. */
  blockSize: number | "auto";
  /** Bytes per second to request at most; undefined: no limit. */
  limit?: number;
  /**
   * `full`: every piece against its hash and the whole file against its SHA-256 (two hash
   * passes); `pieces`: every piece against its hash, the hash list against the agreed root.
   */
  verify: "full" | "pieces";
  /** A SHA-256 the user trusts (`--checksum sha256=HEX`); only servers offering it are used. */
  checksum?: Uint8Array;
  /** Shared-key file: every request is authenticated with that key. */
  secretFile?: string;
}

/** Most concurrent workers `fetch` accepts. */
export const MAX_CONNECTIONS = 64;

function usage(message: string): UdpgetError {
  return new UdpgetError(ExitCode.Usage, `${message} (see udpget --help)`);
}

function parse(
  args: string[],
  options: Record<string, { type: "string" | "boolean"; short?: string }>,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw usage((e as Error).message.split("\n")[0]);
  }
}

/** Parses an integer in `[min, max]` or throws a usage error naming `what`. */
export function parseIntArg(text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw usage(`${what} must be a whole number, got "${text}"`);
  const n = Number(text);
  if (n < min || n > max) throw usage(`${what} must be in ${min}..${max}, got ${text}`);
  return n;
}

function optionalPath(v: string | boolean | undefined, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (v === "") throw usage(`${what} needs a file name`);
  return String(v);
}

/** Parses the arguments after `serve`. */
export function parseServeArgs(args: string[]): ServeArgs {
  const { values, positionals } = parse(args, {
    root: { type: "string" },
    host: { type: "string" },
    "piece-size": { type: "string" },
    rate: { type: "string" },
    "secret-file": { type: "string" },
    tftp: { type: "string" },
    "log-format": { type: "string" },
    "cache-dir": { type: "string" },
    "no-cache": { type: "boolean" },
  });
  if (positionals.length !== 1) throw usage("serve takes exactly one <port>");
  const logFormat = values["log-format"] ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw usage(`--log-format takes "text" or "json", got "${logFormat}"`);
  }
  if (values["cache-dir"] !== undefined && values["no-cache"] === true) {
    throw usage("--cache-dir and --no-cache contradict each other");
  }
  const pieceSize = values["piece-size"] === undefined
    ? DEFAULT_PIECE_SIZE
    : parseIntArg(String(values["piece-size"]), "--piece-size", 1024, 1 << 26);
  if (values.tftp !== undefined && values["secret-file"] !== undefined) {
    throw usage("--tftp cannot be combined with --secret-file: TFTP has no authentication");
  }
  return {
    port: parseIntArg(positionals[0], "port", 0, 65535),
    root: String(values.root ?? "."),
    host: String(values.host ?? "0.0.0.0"),
    pieceSize,
    rate: optionalRate(values.rate, "--rate"),
    secretFile: optionalPath(values["secret-file"], "--secret-file"),
    tftp: values.tftp === undefined
      ? undefined
      : parseIntArg(String(values.tftp), "--tftp port", 0, 65535),
    logFormat,
    cacheDir: optionalPath(values["cache-dir"], "--cache-dir"),
    noCache: values["no-cache"] === true,
  };
}

/** Parses the arguments after `fetch`. */
export function parseFetchArgs(args: string[]): FetchArgs {
  const { values, positionals } = parse(args, {
    output: { type: "string", short: "o" },
    force: { type: "boolean", short: "f" },
    quiet: { type: "boolean", short: "q" },
    "block-size": { type: "string" },
    limit: { type: "string" },
    verify: { type: "string" },
    checksum: { type: "string" },
    "secret-file": { type: "string" },
  });
  const verify = values.verify ?? "pieces";
  if (verify !== "full" && verify !== "pieces") {
    throw usage(`--verify takes "full" or "pieces", got "${verify}"`);
  }
  if (positionals.length < 2 || positionals.length > 3) {
    throw usage("fetch takes <servers.txt> <connections> [<file>]");
  }
  const [serversFile, conns, file] = positionals;
  if (file === "") throw usage("<file> must not be empty");
  if (values.output === "") throw usage("-o needs a file name");
  return {
    serversFile,
    connections: parseIntArg(conns, "<connections>", 1, MAX_CONNECTIONS),
    file,
    output: values.output === undefined ? undefined : String(values.output),
    force: values.force === true,
    quiet: values.quiet === true,
    blockSize: values["block-size"] === undefined || values["block-size"] === "auto"
      ? "auto"
      : parseIntArg(String(values["block-size"]), "--block-size", 512, MAX_BLOCK_SIZE),
    limit: optionalRate(values.limit, "--limit"),
    verify,
    checksum: values.checksum === undefined ? undefined : parseChecksum(String(values.checksum)),
    secretFile: optionalPath(values["secret-file"], "--secret-file"),
  };
}

/** `sha256=<64 hex digits>` → the digest bytes, or a usage error. */
export function parseChecksum(text: string): Uint8Array {
  const m = /^sha256=([0-9a-fA-F]{64})$/.exec(text.trim());
  if (!m) throw usage(`--checksum takes sha256=<64 hex digits>, got "${text}"`);
  return new Uint8Array(m[1].match(/../g)!.map((h) => parseInt(h, 16)));
}

function optionalRate(v: string | boolean | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const rate = parseRate(String(v));
  if (rate === undefined) throw usage(`${flag} takes a rate like 20M or 500k, got "${v}"`);
  return rate;
}
