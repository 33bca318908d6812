/**
 * What a datagram socket offers the shells, whichever layer carries it: batches of received
 * datagrams from an async iterator, and runs of datagrams sent in one call. The batched layer
 * (`batched_socket.ts`: libc through FFI, recvmmsg/sendmmsg, UDP GRO/GSO) and the fallback
 * (`deno_socket.ts`: `Deno.listenDatagram`) both implement it, so client, server and tests do
 * not know which one they have.
 *
 * @module
 */

import type { PeerAddress } from "./peer_address.ts";

/**
 * Datagrams received together. Their bytes live in `data` (the socket's receive slab) and stay
 * valid only until the iterator is advanced: consume them synchronously, or copy.
 */
export interface ReceivedBatch {
  /** The slab holding the datagrams. */
  readonly data: Uint8Array;
  /** Datagrams in this batch (0 when it only reports `softError`). */
  count: number;
  /** Where datagram `i` starts in `data`. */
  readonly offsets: Uint32Array;
  /** Length of datagram `i`. */
  readonly lengths: Uint32Array;
  /** Sender of datagram `i` (decoded on demand: an allocation, not for every datagram). */
  peer(i: number): PeerAddress | undefined;
  /** True when datagrams `i` and `j` came from the same sender. */
  samePeer(i: number, j: number): boolean;
  /** Datagrams the layer dropped while collecting this batch (larger than it was sized for). */
  dropped: number;
  /**
   * An error the socket reported along with (or instead of) datagrams, e.g. "Connection
   * refused" after an ICMP port-unreachable on a connected socket; the loop goes on.
   */
  softError: string | undefined;
}

/**
 * A run of datagrams to one peer: datagram `i` is `prefixLength` bytes of `prefixes` (from
 * `i * prefixLength`) followed by `payload[i * segment, min((i + 1) * segment, payload.length))`.
 * A CHUNK_REPLY run is headers + one file read; a single datagram is `count` 1, no prefix.
 */
export interface SendRun {
  prefixes: Uint8Array;
  prefixLength: number;
  payload: Uint8Array;
  segment: number;
  count: number;
  /**
   * Send with the IP don't-fragment bit and never fragment locally: a datagram larger than the
   * interface allows is not sent, and `send` resolves with {@link SEND_TOO_BIG}. Only for a
   * socket whose `unfragmented` is true.
   */
  unfragmented?: boolean;
}

/** What `send` resolves with when a datagram of an unfragmented run is larger than the path. */
export const SEND_TOO_BIG = "Message too long";

/** The layer carrying a socket: libc batches through FFI, or `Deno.listenDatagram`. */
export type SocketLayer = "batched" | "deno";

/** A UDP socket of either layer. */
export interface DatagramSocket {
  /** Which layer carries it. */
  readonly layer: SocketLayer;
  /** What the layer could turn on, for `--json` and log lines: e.g. `["gso", "gro"]`. */
  readonly features: readonly string[];
  /** Bytes of receive buffer the kernel granted (the default where it cannot be read). */
  readonly receiveBuffer: number;
  /** The bound address. */
  readonly localAddr: Deno.NetAddr;
  /** Whether runs can be sent unfragmented (see {@link SendRun.unfragmented}). */
  readonly unfragmented: boolean;
  /**
   * Received datagrams, a batch at a time, until `close()`; a socket error other than a soft
   * one ends the iteration by throwing, never silently.
   */
  batches(): AsyncIterableIterator<ReceivedBatch>;
  /**
   * Sends `run` to `to` (the connected peer when undefined). Resolves with undefined once all of
   * it was handed to the kernel, or with the error that stopped it (the rest is not sent).
   */
  send(to: PeerAddress | undefined, run: SendRun): Promise<string | undefined>;
  /** Closes the socket; a pending `batches()` wait ends at once. Idempotent. */
  close(): void;
}

/** A one-datagram run of `bytes`. */
export function single(bytes: Uint8Array): SendRun {
  return { prefixes: EMPTY, prefixLength: 0, payload: bytes, segment: bytes.length, count: 1 };
}

const EMPTY = new Uint8Array(0);

/** Length of datagram `i` of `run`. */
export function runDatagramLength(run: SendRun, i: number): number {
  const from = i * run.segment;
  return run.prefixLength + Math.max(0, Math.min(run.segment, run.payload.length - from));
}
