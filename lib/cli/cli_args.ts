/**
 * Command-line parsing for `udpget serve`, `fetch` and `tracker`: the option tables (which also
 * drive `--help`) and the checks that turn every mistake into a one-line usage error.
 *
 * @module
 */

import { MAX_BLOCK_SIZE } from "../wire/packet.ts";
import { DEFAULT_PIECE_SIZE, MIN_AUTO_PIECE_SIZE } from "../io/file_digest.ts";
import { parseRate } from "../engine/token_bucket.ts";
import { IO_CHOICES, type IoChoice } from "../io/udp/open_socket.ts";
import { DEFAULT_SOURCE_LIMITS } from "../tracker/source_limiter.ts";
import { DEFAULT_SWARM_LIMITS } from "../tracker/swarm_table.ts";
import {
  type CommandSpec,
  HELP_OPTION,
  type OptionSpec,
  parseCommand,
  usageError,
} from "./option_table.ts";
import { ipLiteralFamily, parseServerList, type ServerSpec } from "./servers.ts";
import { shortUsage } from "./help.ts";

/** Most concurrent workers `fetch` accepts. */
export const MAX_CONNECTIONS = 64;

/** How help shows the default piece size (`autoPieceSize`). */
const AUTO_PIECE_TEXT = `per file: ${MIN_AUTO_PIECE_SIZE >> 10} KiB up to 128 MiB, then ${
  DEFAULT_PIECE_SIZE >> 20
} MiB from 256 MiB`;

/** Smallest and largest `serve --piece-size`. */
const PIECE_SIZE_BOUNDS = [1024, 1 << 26] as const;

/** Smallest `fetch --block-size` (the largest is MAX_BLOCK_SIZE). */
const MIN_BLOCK_SIZE = 512;

const RATE_NOTE =
  "RATE is bytes per second with an optional suffix: k, M, G (powers of 1000) or Ki, Mi, Gi " +
  "(powers of 1024), e.g. 20M, 500k.";

/** `--io`, the same on both commands: which datagram layer carries the traffic. */
const IO_OPTION: OptionSpec = {
  long: "io",
  type: "string",
  value: "auto|ffi|deno",
  description: "datagram I/O: ffi = batched kernel calls through libc (needs --allow-ffi), " +
    "deno = Deno.listenDatagram, auto = ffi where allowed",
  default: "auto",
};

/** `udpget serve`: what it accepts and what `udpget serve --help` prints. */
export const SERVE_SPEC: CommandSpec = {
  name: "serve",
  summary: "share a directory read-only over UDP until SIGINT/SIGTERM",
  positionals: [{
    name: "port",
    description: "UDP port to listen on, 0..65535 (0: any free port)",
  }],
  options: [
    { long: "root", type: "string", value: "DIR", description: "directory to serve", default: "." },
    {
      long: "host",
      type: "string",
      value: "ADDR",
      description: "address to bind: an IPv4 or IPv6 literal (:: for all IPv6), or localhost",
      default: "0.0.0.0",
    },
    {
      long: "piece-size",
      type: "string",
      value: "BYTES",
      description: `bytes per hashed piece, ${PIECE_SIZE_BOUNDS[0]}..${PIECE_SIZE_BOUNDS[1]}`,
      default: AUTO_PIECE_TEXT,
    },
    {
      long: "rate",
      type: "string",
      value: "RATE",
      description: "send at most RATE bytes/s, all clients together",
      default: "no cap",
    },
    {
      long: "secret-file",
      type: "string",
      value: "FILE",
      description: "answer only requests authenticated with the key in FILE",
    },
    {
      long: "tftp",
      type: "string",
      value: "PORT",
      description: "also answer TFTP read requests on UDP PORT (69: standard; 0: any free port)",
    },
    IO_OPTION,
    {
      long: "log-format",
      type: "string",
      value: "text|json",
      description: "log lines on stdout as text or as one JSON object per line",
      default: "text",
    },
    {
      long: "cache-dir",
      type: "string",
      value: "DIR",
      description: "where file digests are cached across restarts",
      default: "$XDG_CACHE_HOME/udpget or ~/.cache/udpget",
    },
    {
      long: "no-cache",
      type: "boolean",
      description: "neither read nor write the digest cache (hash every file afresh)",
    },
    {
      long: "tracker",
      type: "string",
      value: "HOST:PORT",
      description: "announce the files hashed at start (at most 64) as a seed of each file's " +
        "swarm to this BEP 15 tracker",
    },
    HELP_OPTION,
  ],
  notes: [RATE_NOTE],
};

/** Default `fetch --seed-time` (s): long enough for the peers a little behind to finish. */
export const DEFAULT_SEED_TIME_S = 30;

/** `udpget fetch`: what it accepts and what `udpget fetch --help` prints. */
export const FETCH_SPEC: CommandSpec = {
  name: "fetch",
  summary: "fetch one file from every server in <servers.txt> at once, verified",
  positionals: [
    {
      name: "servers.txt",
      description: 'servers file, one "host port" per line; - or /dev/stdin: read it from stdin',
    },
    {
      name: "connections",
      description: `receive sockets per server, 1..${MAX_CONNECTIONS}`,
    },
    {
      name: "file",
      optional: true,
      description: "name of the file on the servers; left out: asked for on the terminal",
    },
  ],
  options: [
    {
      long: "output",
      short: "o",
      type: "string",
      value: "OUT",
      description: "write the file to OUT, through OUT.part (inside OUT if it is a directory " +
        "or ends in /); -: verified pieces to stdout, in order (not to a terminal)",
      default: "basename of <file> in the current directory",
    },
    {
      long: "force",
      short: "f",
      type: "boolean",
      description: "overwrite an existing OUT, or an OUT.part udpget did not make",
    },
    {
      long: "quiet",
      short: "q",
      type: "boolean",
      description: "print nothing but errors: no progress, notes or summary",
    },
    {
      long: "block-size",
      type: "string",
      value: "auto|N",
      description: `data bytes per datagram, ${MIN_BLOCK_SIZE}..${MAX_BLOCK_SIZE}, ` +
        "or auto: the largest the path carries unfragmented (probed)",
      default: "auto",
    },
    {
      long: "limit",
      type: "string",
      value: "RATE",
      description: "request at most RATE bytes/s in all",
      default: "no limit",
    },
    {
      long: "verify",
      type: "string",
      value: "full|pieces",
      description: "pieces: each piece and the hash list; full: also the whole file's SHA-256",
      default: "pieces",
    },
    {
      long: "checksum",
      type: "string",
      value: "sha256=HEX",
      description: "trust only this SHA-256: use servers offering it, check the file against it",
    },
    {
      long: "secret-file",
      type: "string",
      value: "FILE",
      description: "authenticate every request with the key in FILE",
    },
    IO_OPTION,
    {
      long: "json",
      type: "boolean",
      description: "print one JSON object describing the result on stdout (see README)",
    },
    {
      long: "tracker",
      type: "string",
      value: "HOST:PORT",
      description: "join the file's swarm at this BEP 15 tracker: fetch from peers too, and " +
        "share verified pieces with them",
    },
    {
      long: "share-port",
      type: "string",
      value: "PORT",
      description: "with --tracker: the UDP port peers reach this fetcher on",
      default: "any free port",
    },
    {
      long: "host",
      type: "string",
      value: "ADDR",
      description: "with --tracker: the address to share on (of the servers' address family)",
      default: "all addresses",
    },
    {
      long: "share-rate",
      type: "string",
      value: "RATE",
      description: "with --tracker: send peers at most RATE bytes/s",
      default: "no limit",
    },
    {
      long: "seed-time",
      type: "string",
      value: "SECONDS",
      description: "with --tracker: keep sharing this long once the file is in place",
      default: String(DEFAULT_SEED_TIME_S),
    },
    HELP_OPTION,
  ],
  notes: [RATE_NOTE],
};

/** Default of `tracker --source-rate` (requests per second per source address). */
export const DEFAULT_SOURCE_RATE: number = DEFAULT_SOURCE_LIMITS.rate;

/** `udpget tracker`: what it accepts and what `udpget tracker --help` prints. */
export const TRACKER_SPEC: CommandSpec = {
  name: "tracker",
  summary: "run a BitTorrent UDP tracker (BEP 15) until SIGINT/SIGTERM",
  positionals: [{
    name: "port",
    description: "UDP port to listen on, 0..65535 (0: any free port)",
  }],
  options: [
    {
      long: "host",
      type: "string",
      value: "ADDR",
      description: "address to bind: an IPv4 or IPv6 literal (:: for all IPv6), or localhost",
      default: "0.0.0.0",
    },
    {
      long: "whitelist",
      type: "string",
      value: "FILE",
      description: "track only the info-hashes in FILE (40 hex digits a line); others get an " +
        'error reply "info-hash not allowed"',
      default: "any info-hash",
    },
    {
      long: "secret-file",
      type: "string",
      value: "FILE",
      description: "answer only announces and scrapes authenticated with the key in FILE " +
        "(a udpget extension: BitTorrent clients cannot use such a tracker)",
    },
    {
      long: "source-rate",
      type: "string",
      value: "N",
      description: "requests per second answered per source address (bursts of 2 s); " +
        "0: no limit",
      default: String(DEFAULT_SOURCE_RATE),
    },
    {
      long: "peers-per-address",
      type: "string",
      value: "N",
      description: "peers listed per swarm from one address (an IPv6 /64 is one); beyond, an " +
        "announcer gets peers but is not listed; 0: no limit",
      default: String(DEFAULT_SWARM_LIMITS.maxPeersPerAddress),
    },
    IO_OPTION,
    HELP_OPTION,
  ],
};

/** `udpget swarm-id`: the info-hash of a local file's swarm. */
export const SWARM_ID_SPEC: CommandSpec = {
  name: "swarm-id",
  summary: "print the info-hash of a local file's swarm (for a tracker's whitelist)",
  positionals: [{ name: "file", description: "the file, as a server would serve it" }],
  options: [
    {
      long: "piece-size",
      type: "string",
      value: "BYTES",
      description: "piece size the servers use (a swarm is one file cut one way)",
      default: AUTO_PIECE_TEXT,
    },
  ],
};

/** Every subcommand's table, in the order help lists them. */
export const COMMANDS: readonly CommandSpec[] = [
  SERVE_SPEC,
  FETCH_SPEC,
  TRACKER_SPEC,
  SWARM_ID_SPEC,
];

/** Options of `udpget swarm-id`. */
export interface SwarmIdArgs {
  file: string;
  /** Undefined: the server's own choice for the file (`autoPieceSize`). */
  pieceSize: number | undefined;
}

/** Parses the arguments after `swarm-id`; throws `HelpRequested` for `-h`/`--help`. */
export function parseSwarmIdArgs(args: string[]): SwarmIdArgs {
  const cmd = SWARM_ID_SPEC.name;
  const { values, positionals } = parseCommand(SWARM_ID_SPEC, args);
  if (positionals.length !== 1) throw usageError(cmd, "expects exactly one <file>");
  const pieceSize = values["piece-size"] === undefined
    ? undefined
    : parseIntArg(String(values["piece-size"]), "--piece-size", ...PIECE_SIZE_BOUNDS, cmd);
  return { file: positionals[0], pieceSize };
}

/** Short usage printed after `udpget` alone; `udpget --help` prints the full help. */
export const USAGE: string = shortUsage(COMMANDS);

/** Options of `udpget serve`. */
export interface ServeArgs {
  port: number;
  root: string;
  host: string;
  /** Undefined: each file's own (`autoPieceSize`). */
  pieceSize: number | undefined;
  /** Bytes per second this server sends at most, over all clients; undefined: no cap. */
  rate?: number;
  /** Shared-key file: only requests authenticated with that key are answered. */
  secretFile?: string;
  /** UDP port to also answer TFTP read requests on (`--tftp`); undefined: no TFTP. */
  tftp?: number;
  /** `--log-format`: log lines as text or as one JSON object per line. */
  logFormat: "text" | "json";
  /** `--cache-dir`: where file digests are cached; undefined: the XDG default. */
  cacheDir?: string;
  /** `--no-cache`: neither read nor write the digest cache. */
  noCache: boolean;
  /** `--io`: which datagram layer to use. */
  io: IoChoice;
  /** `--tracker`: announce the served files as a seed; undefined: no tracker. */
  tracker?: ServerSpec;
}

/** Options of `udpget tracker`. */
export interface TrackerArgs {
  port: number;
  host: string;
  /** `--whitelist`: file of the info-hashes to track; undefined: any. */
  whitelist?: string;
  /** `--secret-file`: only authenticated announces and scrapes are answered. */
  secretFile?: string;
  /** `--source-rate`: requests per second per source address; 0: no limit. */
  sourceRate: number;
  /** `--peers-per-address`: peers listed per swarm from one address; 0: no limit. */
  peersPerAddress: number;
  /** `--io`: which datagram layer to use. */
  io: IoChoice;
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
  /** Print one JSON object describing the result on stdout. */
  json: boolean;
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
  /** `--io`: which datagram layer to use. */
  io: IoChoice;
  /** `--tracker` and what goes with it: undefined without a swarm. */
  swarm?: SwarmArgs;
}

/** The swarm options of `fetch` (with `--tracker`). */
export interface SwarmArgs {
  /** The tracker, as given (`host:port`, `[v6]:port`). */
  tracker: ServerSpec;
  /** Port to share on; 0: any free one. */
  sharePort: number;
  /** Address to bind the shared socket to; undefined: every address of the servers' family. */
  host?: string;
  /** Bytes per second sent to peers at most; undefined: no cap. */
  shareRate?: number;
  /** Seconds to keep sharing after the file is complete. */
  seedTime: number;
}

/** Parses an integer in `[min, max]` or throws a usage error of `command` naming `what`. */
export function parseIntArg(
  text: string,
  what: string,
  min: number,
  max: number,
  command: string,
): number {
  if (!/^-?\d+$/.test(text)) {
    throw usageError(command, `${what} must be a whole number, got "${text}"`);
  }
  const n = Number(text);
  if (n < min || n > max) {
    throw usageError(command, `${what} must be in ${min}..${max}, got ${text}`);
  }
  return n;
}

function optionalPath(
  v: string | boolean | undefined,
  what: string,
  command: string,
): string | undefined {
  if (v === undefined) return undefined;
  if (v === "") throw usageError(command, `${what} needs a file name`);
  return String(v);
}

/**
 * `--host` must be an address literal or `localhost`: checked here so a typo is a usage error
 * (exit 2) naming the option, not a failed bind (exit 6). Other names are refused rather than
 * resolved because a name with several addresses would bind one of them silently.
 */
export function parseHostArg(text: string, command = "serve"): string {
  if (text === "localhost" || ipLiteralFamily(text) !== undefined) return text;
  throw usageError(
    command,
    `--host takes an IPv4 or IPv6 address or localhost, got ${JSON.stringify(text)}`,
  );
}

/** Parses the arguments after `serve`; throws `HelpRequested` for `-h`/`--help`. */
export function parseServeArgs(args: string[]): ServeArgs {
  const cmd = SERVE_SPEC.name;
  const { values, positionals } = parseCommand(SERVE_SPEC, args);
  if (positionals.length !== 1) throw usageError(cmd, "expects exactly one <port>");
  const pieceSize = values["piece-size"] === undefined
    ? undefined
    : parseIntArg(String(values["piece-size"]), "--piece-size", ...PIECE_SIZE_BOUNDS, cmd);
  if (values.tftp !== undefined && values["secret-file"] !== undefined) {
    throw usageError(
      cmd,
      "--tftp cannot be combined with --secret-file: TFTP has no authentication",
    );
  }
  if (values["cache-dir"] !== undefined && values["no-cache"] === true) {
    throw usageError(cmd, "--cache-dir and --no-cache contradict each other");
  }
  const logFormat = values["log-format"] ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw usageError(cmd, `--log-format takes "text" or "json", got "${logFormat}"`);
  }
  const port = parseIntArg(positionals[0], "port", 0, 65535, cmd);
  const tftp = values.tftp === undefined
    ? undefined
    : parseIntArg(String(values.tftp), "--tftp port", 0, 65535, cmd);
  if (tftp !== undefined && tftp === port && port !== 0) {
    // two sockets cannot share one UDP port: known here, not after the first one is bound
    throw usageError(cmd, `--tftp ${tftp} is the port udpget serves on: give TFTP another one`);
  }
  return {
    port,
    root: String(values.root ?? "."),
    host: parseHostArg(String(values.host ?? "0.0.0.0")),
    pieceSize,
    rate: optionalRate(values.rate, "--rate", cmd),
    secretFile: optionalPath(values["secret-file"], "--secret-file", cmd),
    tftp,
    logFormat,
    cacheDir: optionalPath(values["cache-dir"], "--cache-dir", cmd),
    noCache: values["no-cache"] === true,
    io: parseIoArg(values.io, cmd),
    tracker: values.tracker === undefined ? undefined : parseTrackerSpec(values.tracker, cmd),
  };
}

/** Parses the arguments after `tracker`; throws `HelpRequested` for `-h`/`--help`. */
export function parseTrackerArgs(args: string[]): TrackerArgs {
  const cmd = TRACKER_SPEC.name;
  const { values, positionals } = parseCommand(TRACKER_SPEC, args);
  if (positionals.length !== 1) throw usageError(cmd, "expects exactly one <port>");
  return {
    port: parseIntArg(positionals[0], "port", 0, 65535, cmd),
    host: parseHostArg(String(values.host ?? "0.0.0.0"), cmd),
    whitelist: optionalPath(values.whitelist, "--whitelist", cmd),
    secretFile: optionalPath(values["secret-file"], "--secret-file", cmd),
    sourceRate: values["source-rate"] === undefined
      ? DEFAULT_SOURCE_RATE
      : parseIntArg(String(values["source-rate"]), "--source-rate", 0, 1_000_000, cmd),
    peersPerAddress: values["peers-per-address"] === undefined
      ? DEFAULT_SWARM_LIMITS.maxPeersPerAddress
      : parseIntArg(String(values["peers-per-address"]), "--peers-per-address", 0, 1_000_000, cmd),
    io: parseIoArg(values.io, cmd),
  };
}

/** `--io auto|ffi|deno`, or a usage error of `command`. */
function parseIoArg(v: string | boolean | undefined, command: string): IoChoice {
  if (v === undefined) return "auto";
  const choice = IO_CHOICES.find((c) => c === v);
  if (!choice) throw usageError(command, `--io takes auto, ffi or deno, got "${v}"`);
  return choice;
}

/** Parses the arguments after `fetch`; throws `HelpRequested` for `-h`/`--help`. */
export function parseFetchArgs(args: string[]): FetchArgs {
  const cmd = FETCH_SPEC.name;
  const { values, positionals } = parseCommand(FETCH_SPEC, args);
  const verify = values.verify ?? "pieces";
  if (verify !== "full" && verify !== "pieces") {
    throw usageError(cmd, `--verify takes "full" or "pieces", got "${verify}"`);
  }
  if (positionals.length < 2 || positionals.length > 3) {
    throw usageError(cmd, "expects <servers.txt> <connections> [<file>]");
  }
  const [serversFile, conns, file] = positionals;
  if (serversFile === "") throw usageError(cmd, "<servers.txt> must not be empty");
  if (file === "") throw usageError(cmd, "<file> must not be empty");
  if (values.output === "") throw usageError(cmd, "-o needs a file name");
  if (values.json === true && values.output === "-") {
    throw usageError(cmd, "--json and -o - both write to stdout: choose one");
  }
  return {
    serversFile,
    connections: parseIntArg(conns, "<connections>", 1, MAX_CONNECTIONS, cmd),
    file,
    output: values.output === undefined ? undefined : String(values.output),
    force: values.force === true,
    quiet: values.quiet === true,
    json: values.json === true,
    blockSize: values["block-size"] === undefined || values["block-size"] === "auto"
      ? "auto"
      : parseIntArg(
        String(values["block-size"]),
        "--block-size",
        MIN_BLOCK_SIZE,
        MAX_BLOCK_SIZE,
        cmd,
      ),
    limit: optionalRate(values.limit, "--limit", cmd),
    verify,
    checksum: values.checksum === undefined ? undefined : parseChecksum(String(values.checksum)),
    secretFile: optionalPath(values["secret-file"], "--secret-file", cmd),
    io: parseIoArg(values.io, cmd),
    swarm: parseSwarmArgs(values, cmd),
  };
}

const SWARM_ONLY = ["share-port", "host", "share-rate", "seed-time"];

/** `--tracker HOST:PORT` (the servers file's syntax for one line), or a usage error. */
function parseTrackerSpec(v: string | boolean, cmd: string): ServerSpec {
  const list = parseServerList(String(v));
  if (list.servers.length !== 1 || list.errors.length > 0) {
    throw usageError(cmd, `--tracker takes HOST:PORT, got "${v}"`);
  }
  return list.servers[0];
}

/** `--tracker` and its companions; a usage error for a companion without it. */
function parseSwarmArgs(
  values: Record<string, string | boolean | undefined>,
  cmd: string,
): SwarmArgs | undefined {
  if (values.tracker === undefined) {
    const stray = SWARM_ONLY.find((k) => values[k] !== undefined);
    if (stray) throw usageError(cmd, `--${stray} needs --tracker`);
    return undefined;
  }
  return {
    tracker: parseTrackerSpec(values.tracker, cmd),
    sharePort: values["share-port"] === undefined
      ? 0
      : parseIntArg(String(values["share-port"]), "--share-port", 0, 65535, cmd),
    host: values.host === undefined ? undefined : parseHostArg(String(values.host), cmd),
    shareRate: optionalRate(values["share-rate"], "--share-rate", cmd),
    seedTime: values["seed-time"] === undefined
      ? DEFAULT_SEED_TIME_S
      : parseIntArg(String(values["seed-time"]), "--seed-time", 0, 7 * 86400, cmd),
  };
}

/** `sha256=<64 hex digits>` → the digest bytes, or a usage error of `fetch`. */
export function parseChecksum(text: string): Uint8Array {
  const m = /^sha256=([0-9a-fA-F]{64})$/.exec(text.trim());
  if (!m) {
    throw usageError(FETCH_SPEC.name, `--checksum takes sha256=<64 hex digits>, got "${text}"`);
  }
  return new Uint8Array(m[1].match(/../g)!.map((h) => parseInt(h, 16)));
}

function optionalRate(
  v: string | boolean | undefined,
  flag: string,
  command: string,
): number | undefined {
  if (v === undefined) return undefined;
  const rate = parseRate(String(v));
  if (rate === undefined) {
    throw usageError(command, `${flag} takes a rate like 20M or 500k, got "${v}"`);
  }
  return rate;
}
