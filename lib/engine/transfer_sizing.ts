/**
 * How big the transfer's pieces of traffic may be, from what the shell knows about its sockets
 * and the servers' addresses: datagrams per socket buffer, the window floor of a LAN path, the
 * in-flight cap on loopback, and the block-size probe's candidates. Pure arithmetic: the fetch
 * coordinator turns these into `FetchSession` and `BlockProbe` options.
 *
 * @module
 */

import {
  blockForMtu,
  type BlockProbeOptions,
  type PathFamily,
  pathProbeSizes,
} from "./block_probe.ts";

/** What the sizing needs to know about one server. */
export interface ServerPath {
  /** Numeric IP address (a name is resolved by the shell first). */
  hostname: string;
  /** Its address family (the probe's candidate sizes depend on the IP header). */
  family: PathFamily;
}

/** Receive buffer of a socket the kernel did not enlarge (Linux's default `rmem_default`). */
export const DEFAULT_RECEIVE_BUFFER = 212992;

/**
 * Datagrams of `blockSize` one socket's receive buffer can hold (`rcvbuf` as the kernel reports
 * it: 208 KiB by default, what the batched layer raised it to otherwise). The kernel charges
 * each datagram roughly twice its size plus ~1.5 KiB of bookkeeping (skb truesize), and admits
 * one more once under the limit; measured on loopback with the default buffer: 2 × 65000 B,
 * 4–5 × 32 KiB, 11 × 8 KiB, ~90 × 1400 B.
 */
export function laneDatagrams(blockSize: number, rcvbuf = DEFAULT_RECEIVE_BUFFER): number {
  return Math.max(2, Math.min(4096, Math.floor(rcvbuf / (2 * (blockSize + 1536))) + 1));
}

/**
 * The window floor of a LAN path (see `lanMinWindowBytes` of the session): half of what one
 * server's receive sockets hold, between 128 KiB and 4 MiB. On the fallback layer's 208 KiB
 * sockets a larger window overflowed them (5 % and more re-requested on a veth LAN); on the
 * batched layer's 8 MiB sockets the 4 MiB cap is what keeps batches flowing without a standing
 * queue.
 */
export function lanWindowBytes(lanes: number, receiveBuffer: number, blockSize: number): number {
  const held = lanes * laneDatagrams(blockSize, receiveBuffer) * blockSize;
  return Math.max(128 << 10, Math.min(4 << 20, held / 2));
}

/** Whether every server is on this machine: no path MTU, the bottleneck is the receiver. */
export function allLoopback(servers: readonly ServerPath[]): boolean {
  return servers.every((s) => s.hostname.startsWith("127.") || s.hostname === "::1");
}

/** Largest block that fits one Ethernet frame without IP fragmentation (RFC 8085 §3.2). */
export function mtuSafeBlock(family: PathFamily): number {
  return blockForMtu(1500, family);
}

/** Caps on one server's traffic, where the receiver's own buffers are the bottleneck. */
export interface LoopbackLimits {
  /** Most bytes in flight per server: what its receive sockets buffer. */
  maxInflightPerSource: number;
  /** Largest request: one must not fill a socket's buffer by itself. */
  maxRequestBytes: number;
}

/**
 * On loopback the receiver's socket buffers are the bottleneck queue: the transfer stays within
 * them (all lanes of a server) and no request fills one by itself.
 */
export function loopbackLimits(
  lanes: number,
  receiveBuffer: number,
  blockSize: number,
): LoopbackLimits {
  const laneBytes = laneDatagrams(blockSize, receiveBuffer) * blockSize;
  return {
    maxInflightPerSource: lanes * laneBytes,
    maxRequestBytes: Math.max(blockSize, laneBytes / 2),
  };
}

/**
 * The probe's candidates for `paths`: undefined on loopback (the default sizes, fragments
 * allowed since nothing is lost there); off loopback the path MTUs, asked unfragmented, with one
 * Ethernet frame's worth for a server that cannot send them.
 */
export function probePlan(
  paths: readonly ServerPath[],
): Pick<BlockProbeOptions, "sizes" | "unfragmented"> | undefined {
  if (allLoopback(paths)) return undefined;
  const families = [...new Set(paths.map((s) => s.family))];
  return {
    sizes: pathProbeSizes(families),
    unfragmented: { fallback: Math.min(...families.map(mtuSafeBlock)) },
  };
}
