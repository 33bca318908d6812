/**
 * `udpget fetch --json`: the one JSON object printed on stdout when a fetch ends, successful
 * or not. Its fields are a stable interface for scripts (documented in the README): fields may
 * be added, never renamed or removed; absent values are `null`, never left out.
 *
 * @module
 */

/** What became of one server listed in the servers file. */
export type ServerStatus =
  /** It sent part of the file and was still in use at the end. */
  | "used"
  /** It agreed on the file but was dropped during the transfer (silent, corrupt...). */
  | "dropped"
  /** It offered another version of the file than the one chosen. */
  | "left_out"
  /** It answered the metadata request with an error (not found, access denied...). */
  | "refused"
  /** It never answered. */
  | "silent"
  /**
   * It had not answered when the fetch ended: the others had settled the version, so the
   * transfer started (and ended) without waiting for it; or the fetch failed before.
   */
  | "unknown";

/** One server's line of the report. */
export interface ServerReport {
  /** As written in the servers file (`host port`, IPv6 in brackets). */
  server: string;
  status: ServerStatus;
  /** Bytes of the file it delivered first (in this run). */
  bytes: number;
  /** Why it was dropped, refused or left out; null otherwise. */
  reason: string | null;
}

/** The result of one `udpget fetch`. */
export interface FetchReport {
  ok: boolean;
  /** The process exit status (see the exit-code table). */
  exitCode: number;
  /** The one-line error, or null on success. */
  error: string | null;
  /** The file name asked for. */
  file: string | null;
  /** Where it was written (`-`: standard output). */
  output: string | null;
  size: number | null;
  /** Hex SHA-256 of the file (as agreed by the servers, and verified on success). */
  sha256: string | null;
  /** Wall-clock seconds from start to end, all waits included. */
  seconds: number;
  /** Of those, seconds spent waiting for servers to hash the file. */
  hashWaitSeconds: number;
  /** Bytes fetched in this run, resumed from an earlier run, and asked for again after loss. */
  bytes: { fetched: number; resumed: number; rerequested: number };
  /** Data bytes per datagram used. */
  blockSize: number | null;
  /** How the file was verified: "pieces" (each piece against its hash) or "full". */
  verification: "pieces" | "full" | null;
  servers: ServerReport[];
  /** The datagram layer that carried the fetch (null if no socket was opened). */
  io: IoReport | null;
  /** The swarm this fetch took part in (`--tracker`), else null. */
  swarm: SwarmReport | null;
}

/** One swarm peer's line of the report. */
export interface PeerReport {
  /** Its address, as `host:port` (IPv6 in brackets). */
  peer: string;
  /** Bytes of the file it delivered first. */
  bytes: number;
  /** Whether it was still in the swarm when the fetch ended. */
  alive: boolean;
  /** Why it left or was excluded; null otherwise. */
  reason: string | null;
}

/** What a fetch did in its swarm. */
export interface SwarmReport {
  /** The tracker, as given. */
  tracker: string;
  /** The swarm's info-hash (hex). */
  infoHash: string;
  /** The port this fetcher shared on. */
  port: number;
  /** Bytes of the file that came from servers, and from peers. */
  fromServers: number;
  fromPeers: number;
  /** Bytes of the file sent to peers (until the report: the fetch's end). */
  uploaded: number;
  /** Every peer met. */
  peers: PeerReport[];
}

/** Which datagram layer a fetch ran on, and why the batched one was not used if it was not. */
export interface IoReport {
  /** "batched" (libc through FFI) or "deno" (`Deno.listenDatagram`). */
  layer: "batched" | "deno";
  /** What the batched layer could turn on: "gso", "gro". */
  features: string[];
  /** Receive buffer per socket as the kernel reports it, bytes. */
  receiveBuffer: number;
  /** Why the fallback is in use ("no --allow-ffi", "--io deno", ...), else null. */
  fallbackReason: string | null;
}

/** The report as one line of JSON, fields in their documented order. */
export function formatReport(r: FetchReport): string {
  const ordered: FetchReport = {
    ok: r.ok,
    exitCode: r.exitCode,
    error: r.error,
    file: r.file,
    output: r.output,
    size: r.size,
    sha256: r.sha256,
    seconds: round3(r.seconds),
    hashWaitSeconds: round3(r.hashWaitSeconds),
    bytes: { fetched: r.bytes.fetched, resumed: r.bytes.resumed, rerequested: r.bytes.rerequested },
    blockSize: r.blockSize,
    verification: r.verification,
    servers: r.servers.map((s) => ({
      server: s.server,
      status: s.status,
      bytes: s.bytes,
      reason: s.reason,
    })),
    io: r.io && {
      layer: r.io.layer,
      features: r.io.features,
      receiveBuffer: r.io.receiveBuffer,
      fallbackReason: r.io.fallbackReason,
    },
    swarm: r.swarm && {
      tracker: r.swarm.tracker,
      infoHash: r.swarm.infoHash,
      port: r.swarm.port,
      fromServers: r.swarm.fromServers,
      fromPeers: r.swarm.fromPeers,
      uploaded: r.swarm.uploaded,
      peers: r.swarm.peers.map((p) => ({
        peer: p.peer,
        bytes: p.bytes,
        alive: p.alive,
        reason: p.reason,
      })),
    },
  };
  return JSON.stringify(ordered);
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
