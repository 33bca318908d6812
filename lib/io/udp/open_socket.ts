/**
 * Chooses the datagram layer: the batched one (libc through FFI) where it is allowed and
 * verified, else `Deno.listenDatagram`. `--io auto` picks; `--io ffi` insists (a clear error
 * when it cannot); `--io deno` forces the fallback.
 *
 * @module
 */

import { BatchedSocket } from "./batched_socket.ts";
import type { DatagramSocket } from "./datagram_socket.ts";
import { DenoSocket } from "./deno_socket.ts";
import { loadLibc } from "./libc.ts";
import type { PeerAddress } from "./peer_address.ts";

/** What `--io` asks for. */
export type IoChoice = "auto" | "ffi" | "deno";

/** The `--io` values, for parsing and help. */
export const IO_CHOICES: readonly IoChoice[] = ["auto", "ffi", "deno"];

/** Options of {@link openSocket}. */
export interface OpenSocketOptions {
  /** Address to bind (numeric). */
  hostname: string;
  /** Port to bind; 0 picks one. */
  port: number;
  /** The one peer this socket talks to (see each layer for what that changes). */
  connect?: PeerAddress;
  /** Largest datagram expected. */
  maxDatagram: number;
  /** Receive buffer to ask for on the batched layer (default 8 MiB). */
  receiveBuffer?: number;
  /** Messages per receive call on the batched layer. */
  slots?: number;
}

/** Why `choice` cannot have the batched layer here, or undefined if it can. */
export function batchedUnavailable(choice: IoChoice): string | undefined {
  if (choice === "deno") return "--io deno";
  const libc = loadLibc();
  return typeof libc === "string" ? libc : undefined;
}

/**
 * A socket on the layer `choice` allows. Throws with the reason when `ffi` was demanded and the
 * batched layer is unavailable, and with the system's message when binding fails.
 */
export function openSocket(choice: IoChoice, o: OpenSocketOptions): DatagramSocket {
  const libc = choice === "deno" ? "--io deno" : loadLibc();
  if (typeof libc === "string") {
    if (choice === "ffi") throw new Error(`--io ffi: the batched layer is unavailable: ${libc}`);
    return DenoSocket.open(o);
  }
  return BatchedSocket.open(libc, o);
}

/** One phrase for log lines and reports, e.g. "batched (gso, gro; receive buffer 8 MiB)". */
export function describeSocket(s: DatagramSocket, fallbackWhy?: string): string {
  const mib = (s.receiveBuffer / (1 << 20)).toFixed(s.receiveBuffer >= 1 << 20 ? 0 : 2);
  if (s.layer === "deno") {
    return `deno${fallbackWhy ? ` (${fallbackWhy})` : ""}; receive buffer ${mib} MiB`;
  }
  const f = s.features.length > 0 ? s.features.join(", ") : "no gso/gro";
  return `batched (${f}); receive buffer ${mib} MiB`;
}
