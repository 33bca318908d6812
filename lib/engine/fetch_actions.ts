/**
 * The contract of the fetch coordinator (`fetch_coordinator.ts`) with its shells: what it is
 * told at the start, the phases it goes through, the datagrams it sends, and the actions it
 * asks the shell to take (`client.ts` over sockets and files, the simulator over simulated
 * paths). Types only.
 *
 * @module
 */

import type { UdpgetError } from "../base/exit.ts";
import type { Packet } from "../wire/packet.ts";
import type { FileMeta } from "./consensus.ts";
import type { CongestionController } from "./congestion/controller.ts";
import type { ServerPath } from "./transfer_sizing.ts";
import type { TrustOptions } from "./trust.ts";

/**
 * Where the fetch is: `idle` before `start`; `discovery` (asking every server about the name);
 * `output` (a version is chosen: waits for `handleOutputReady`); `probe` (the block size);
 * `prepare` (waits for `handlePartReady`); on a resume `hashes` (the hash list first) and
 * `recheck` (the pieces the `.part` claims); `transfer`; `digest` (waits for `handleDigest`);
 * then `finished` or `failed`.
 */
export type FetchPhase =
  | "idle"
  | "discovery"
  | "output"
  | "probe"
  | "prepare"
  | "hashes"
  | "recheck"
  | "transfer"
  | "digest"
  | "finished"
  | "failed";

/** What became of a server, as the `--json` report names it. */
export type ServerOutcome = "used" | "dropped" | "left_out" | "refused" | "silent";

/** One line of the servers file, as the coordinator sees it. */
export interface CoordinatorServer extends ServerPath {
  /** As written in the servers file, for messages. */
  label: string;
}

/** What the coordinator is told once, at the start. */
export interface FetchCoordinatorOptions extends TrustOptions {
  /** The servers, in the order of the servers file (their indices name them everywhere). */
  servers: readonly CoordinatorServer[];
  /** Receive sockets per server (`<connections>`): requests take turns over them. */
  lanes: number;
  /** Bytes of receive buffer each socket got from the kernel. */
  receiveBuffer: number;
  /** `--block-size`: a size to use (within the servers' largest), or `auto` to probe. */
  blockSize: number | "auto";
  /** `--limit`: bytes per second, all servers together. */
  limitBytesPerSec?: number;
  /** Request ids (random in the shell, seeded in the simulator). */
  nextRequestId: () => number;
  /** SHA-256 (to check the hash list against its root). */
  sha256: (bytes: Uint8Array) => Uint8Array;
  /**
   * The order the transfer hands pieces out in, for a file of `pieces` pieces (a permutation);
   * default: lowest offsets first. A swarm's fetchers each shuffle theirs.
   */
  pieceOrder?: (pieces: number) => number[];
  /** A congestion controller per source instead of the default (the simulator's experiments). */
  makeController?: (source: number) => CongestionController;
}

/** A datagram to send. */
export interface CoordinatorTransmit {
  /** Index of the server in the servers file; −1 for a swarm peer (`peer`). */
  server: number;
  /** The swarm peer it goes to (the handle given to `addPeer`), instead of a server. */
  peer?: number;
  /** The lane (receive socket) to send it from. */
  lane: number;
  /** The request (to encode and send). */
  packet: Packet;
  /** Datagrams to send it as: 2 on a lossy path (the server ignores the second it gets). */
  copies: 1 | 2;
}

/** What the shell found when it opened the `.part` (see `handlePartReady`). */
export interface PartReady {
  /** Pieces an earlier run recorded as verified (to re-check before trusting them). */
  claimed: readonly number[];
  /** Pieces the `.part` holds at once (a stream's reorder buffer); 0: the whole file. */
  ring: number;
  /** The output as the user named it, for the resume's lines. */
  output: string;
}

/** What the shell must act on (see the module comment). */
export type CoordinatorAction =
  /** The fetch moved on (the shell's status line follows it). */
  | { kind: "phase"; phase: FetchPhase }
  /** A line for the user (stderr; none with `--quiet`). */
  | { kind: "notice"; line: string }
  /** What became of server `server`, for the report. */
  | { kind: "server"; server: number; status: ServerOutcome; reason: string | null }
  /** `name` is available as `meta`: check the output may be written, then `handleOutputReady`. */
  | { kind: "check_output"; name: string; meta: FileMeta }
  /**
   * The block size is known: open the `.part` (a stream's reorder buffer only if pieces may be
   * vouched for one by one, `piecewise`), then `handlePartReady`.
   */
  | { kind: "open_part"; blockSize: number; piecewise: boolean }
  /**
   * Open the verifier: pieces against `hashes` (trusted; undefined: none), and with `whole` the
   * whole file against the digest. Comes before any `verify`.
   */
  | { kind: "open_verifier"; hashes: Uint8Array | undefined; whole: boolean }
  /** Check `piece` (written whole) and answer `handleVerified`. */
  | { kind: "verify"; piece: number }
  /** Every piece is in: compute the digest (when the verifier hashes the whole file), answer `handleDigest`. */
  | { kind: "digest" }
  /** The file is complete and verified. */
  | { kind: "finished" }
  /** Swarm peer `peer` is out of the transfer (silent, or it sent a bad piece: `reason`). */
  | { kind: "peer_dropped"; peer: number; reason: string }
  /** The fetch cannot go on: `error` says why, with its exit code. */
  | { kind: "failed"; error: UdpgetError };
