/**
 * The client's sockets: one UDP socket per (worker, server) pair, connected to its server, each
 * with an async-iterator receive loop over batches of datagrams. Data (CHUNK_REPLY) goes to the
 * chunk handler through the allocation-free header reader; everything else is decoded and routed
 * to whoever is waiting for that request id. A socket per pair gives every server its own kernel
 * receive buffer on every worker, so one server's burst cannot crowd out another's, and a
 * connected socket hears only its server (and, on the batched layer, its ICMP errors).
 *
 * @module
 */

import { seal } from "../wire/auth.ts";
import { decode, MAX_DATAGRAM_SIZE, type Packet } from "../wire/packet.ts";
import { ChunkDispatch, type ChunkHandler } from "./chunk_dispatch.ts";
import { type DatagramSocket, type ReceivedBatch, single } from "./udp/datagram_socket.ts";
import { describeSocket, type IoChoice, openSocket } from "./udp/open_socket.ts";
import { PeerAddress } from "./udp/peer_address.ts";
import { BatchedSocket } from "./udp/batched_socket.ts";

/** A resolved server address. */
export interface ServerAddr {
  /** As written in the servers file, for messages. */
  label: string;
  /** Numeric IP address. */
  hostname: string;
  port: number;
  family: "ipv4" | "ipv6";
}

/** Counters of datagrams the endpoint dropped. */
export interface EndpointStats {
  malformed: number;
  stray: number;
  /** Datagrams sent (requests and their copies). */
  sent: number;
}

/** The client side of the wire: sockets, request ids and reply routing. */
export class ClientEndpoint {
  /** Datagrams dropped because they were undecodable or matched no request. */
  readonly stats: EndpointStats = { malformed: 0, stray: 0, sent: 0 };
  #servers: ServerAddr[];
  /** `#sockets[worker][server]`. */
  #sockets: DatagramSocket[][] = [];
  #loops: Promise<void>[] = [];

  /** Where replies go that match no id opened here (the fetch engine's own ids). */
  #fallback: ((server: number, p: Packet) => void) | undefined;

  /** Shared key (`--secret-file`): every request is sealed with it. */
  #key: Uint8Array | undefined;
  #peers: PeerAddress[];
  #chunks: ChunkHandler | undefined;
  #batchEnd: (() => void) | undefined;
  #dispatch = new ChunkDispatch();
  /** Errors the sockets reported, per server (ICMP "connection refused" and the like). */
  #softErrors = new Map<number, string>();
  #onSoftError: ((server: number, error: string) => void) | undefined;
  /** A receive loop that ended on an error, if any (it is reported, never swallowed). */
  loopError: string | undefined;

  /**
   * Opens `workers` sockets for each server on the layer `io` allows, bound to the server's
   * address family and connected to it. With `key`, every request sent carries an
   * authentication trailer. Throws when a socket cannot be opened.
   */
  constructor(servers: ServerAddr[], workers: number, key?: Uint8Array, io: IoChoice = "auto") {
    this.#servers = servers;
    this.#key = key;
    this.#peers = servers.map((s) => PeerAddress.of(s.hostname, s.port));
    try {
      for (let w = 0; w < workers; w++) {
        const row: DatagramSocket[] = [];
        this.#sockets.push(row);
        servers.forEach((s, server) => {
          const sock = openSocket(io, {
            hostname: s.family === "ipv4" ? "0.0.0.0" : "::",
            port: 0,
            connect: this.#peers[server],
            maxDatagram: MAX_DATAGRAM_SIZE,
          });
          row.push(sock);
          this.#loops.push(this.#receiveLoop(sock, server));
        });
      }
    } catch (e) {
      for (const row of this.#sockets) for (const s of row) s.close();
      throw e;
    }
  }

  /** The layer the sockets are on, and what it could turn on, e.g. "batched (gso, gro; …)". */
  describe(fallbackWhy?: string): string {
    return describeSocket(this.#sockets[0][0], fallbackWhy);
  }

  /** "batched" or "deno". */
  get layer(): "batched" | "deno" {
    return this.#sockets[0][0].layer;
  }

  /** What the layer could turn on ("gso", "gro"). */
  get features(): string[] {
    return [...this.#sockets[0][0].features];
  }

  /** Bytes of receive buffer each socket has. */
  get receiveBuffer(): number {
    return this.#sockets[0][0].receiveBuffer;
  }

  /** Counters of the batched layer summed over the sockets (empty on the fallback). */
  layerStats(): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const row of this.#sockets) {
      for (const s of row) {
        if (!(s instanceof BatchedSocket)) continue;
        for (const [k, v] of Object.entries(s.stats)) sum[k] = (sum[k] ?? 0) + v;
      }
    }
    return sum;
  }

  /** The last error a socket reported for `server` (e.g. "Connection refused"), if any. */
  softError(server: number): string | undefined {
    return this.#softErrors.get(server);
  }

  /**
   * Calls `handler` with every error a socket reports about its server (an ICMP error: the
   * batched layer's connected sockets see them; the fallback never does), or stops with undefined.
   */
  onSoftError(handler: ((server: number, error: string) => void) | undefined): void {
    this.#onSoftError = handler;
  }

  #noteSoftError(server: number, error: string): void {
    this.#softErrors.set(server, error);
    this.#onSoftError?.(server, error);
  }

  /**
   * Routes every CHUNK_REPLY from a server straight to `handler` (the transfer's hot path), and
   * calls `batchEnd` after each batch of datagrams (flush writes, wake the drive loop). With
   * undefined, data is decoded and routed like any other reply.
   */
  routeChunks(handler: ChunkHandler | undefined, batchEnd?: () => void): void {
    this.#chunks = handler;
    this.#batchEnd = batchEnd;
  }

  /** Number of workers (sockets per family). */
  get workers(): number {
    return this.#sockets.length;
  }

  /**
   * Routes every reply to `handler`, with the index of the server it came from (each socket
   * hears only its server). The machines allocate their own request ids and check them.
   */
  routeOthers(handler: ((server: number, p: Packet) => void) | undefined): void {
    this.#fallback = handler;
  }

  /** Sends `bytes` to `server` from `worker`'s socket; false if the send failed. */
  async send(worker: number, server: number, bytes: Uint8Array): Promise<boolean> {
    const sock = this.#sockets[worker][server];
    this.stats.sent++;
    if (this.#key) {
      bytes = seal(bytes, this.#key, Date.now(), crypto.getRandomValues(new Uint8Array(8)));
    }
    // e.g. ICMP unreachable reported on a previous send: same as a loss, and remembered
    const err = await sock.send(undefined, single(bytes));
    if (err !== undefined) this.#noteSoftError(server, err);
    return err === undefined;
  }

  /** Closes every socket and waits for the receive loops to end. */
  async shutdown(): Promise<void> {
    for (const row of this.#sockets) for (const s of row) s.close();
    await Promise.allSettled(this.#loops);
  }

  /** Every socket talks to one server (connected): its datagrams come from that one. */
  async #receiveLoop(sock: DatagramSocket, server: number): Promise<void> {
    try {
      for await (const b of sock.batches()) {
        if (b.softError !== undefined) this.#noteSoftError(server, b.softError);
        if (b.count > 0) this.#onBatch(b, server);
      }
    } catch (e) {
      // not a close (that ends the iteration quietly): a real socket failure, kept for the shell
      this.loopError = e instanceof Error ? e.message : String(e);
    }
  }

  #onBatch(b: ReceivedBatch, server: number): void {
    this.#dispatch.dispatch(b, performance.now(), server, this.#chunks, this.#route);
    this.#batchEnd?.();
  }

  #route = (data: Uint8Array, server: number): void => {
    const r = decode(data);
    if (!r.ok) {
      this.stats.malformed++;
      return;
    }
    if (!this.#fallback) {
      this.stats.stray++;
      return;
    }
    this.#fallback(server, r.packet);
  };
}
