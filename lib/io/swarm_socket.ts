/**
 * The one socket of a swarm node: the port it announces, on which it asks peers for pieces,
 * answers their requests and talks to the tracker. Unconnected (it hears every peer), with an
 * async-iterator receive loop over batches; data from peers (CHUNK_REPLY) is handed to the shell
 * in place with the sender, everything else as a view to be decoded. Runs of blocks asked for by
 * peers are read from the file with one read each and sent with one call (GSO on the batched
 * layer), as `serve` does, once the share rate lets them go.
 *
 * @module
 */

import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkReplyHeader,
  emptyChunkReplyHeader,
  MAX_DATAGRAM_SIZE,
  readChunkReplyHeader,
} from "../wire/packet.ts";
import { chunkRun, type RunAction } from "../serving/serve_core.ts";
import { type DatagramSocket, single } from "./udp/datagram_socket.ts";
import { type IoChoice, openSocket } from "./udp/open_socket.ts";
import { PeerAddress } from "./udp/peer_address.ts";

/** Receives one peer's CHUNK_REPLY in place: header in `h`, data in `data` (valid during the call). */
export type PeerChunkHandler = (
  now: number,
  from: PeerAddress,
  h: Readonly<ChunkReplyHeader>,
  data: Uint8Array,
) => void;

/** Receives any other datagram as a view (valid during the call). */
export type PeerDatagramHandler = (now: number, from: PeerAddress, data: Uint8Array) => void;

/** Counters of the swarm socket. */
export interface SwarmSocketStats {
  /** Data bytes sent to peers (runs of blocks). */
  uploaded: number;
  /** Sends that failed (the peer's port gone, a full buffer). */
  sendErrors: number;
}

/** Largest run read and sent at once (the serve core's default run). */
const RUN_BYTES = 1 << 20;
const RUN_BLOCKS = 1024;

/** The swarm node's socket (see the module comment). */
export class SwarmSocket {
  readonly stats: SwarmSocketStats = { uploaded: 0, sendErrors: 0 };
  #sock: DatagramSocket;
  #loop: Promise<void> | undefined;
  #addrs = new Map<string, PeerAddress>();
  #runBuf = new Uint8Array(RUN_BYTES);
  #headers = new Uint8Array(CHUNK_REPLY_HEADER_SIZE * RUN_BLOCKS);
  #header: ChunkReplyHeader = emptyChunkReplyHeader();
  /** A receive loop that ended on an error (reported, never swallowed). */
  loopError: string | undefined;

  private constructor(sock: DatagramSocket) {
    this.#sock = sock;
  }

  /** Binds `hostname`:`port` (0: any free port) on the layer `io` allows; throws on failure. */
  static open(io: IoChoice, hostname: string, port: number): SwarmSocket {
    return new SwarmSocket(openSocket(io, { hostname, port, maxDatagram: MAX_DATAGRAM_SIZE }));
  }

  /** The bound port (the one to announce). */
  get port(): number {
    return this.#sock.localAddr.port;
  }

  /** Starts the receive loop: data to `chunks`, the rest to `other`, `batchEnd` after each batch. */
  listen(chunks: PeerChunkHandler, other: PeerDatagramHandler, batchEnd: () => void): void {
    this.#loop = this.#receive(chunks, other, batchEnd);
  }

  /** The peer address object for `hostname`:`port` (kept: sends do no address work). */
  address(hostname: string, port: number): PeerAddress {
    const key = `${hostname}|${port}`;
    let a = this.#addrs.get(key);
    if (!a) {
      a = PeerAddress.of(hostname, port);
      if (this.#addrs.size > 4096) this.#addrs.clear(); // bounded: peers come and go
      this.#addrs.set(key, a);
    }
    return a;
  }

  /** Sends one datagram; false when the send failed. */
  async send(to: PeerAddress, bytes: Uint8Array): Promise<boolean> {
    const err = await this.#sock.send(to, single(bytes));
    if (err !== undefined) this.stats.sendErrors++;
    return err === undefined;
  }

  /**
   * Sends the run `a` of blocks read from `file`; false when the file ended first (it cannot,
   * for a verified piece, but a peer must never get stale bytes) or the send failed.
   */
  async sendRun(to: PeerAddress, a: RunAction, file: Deno.FsFile): Promise<boolean> {
    const data = this.#runBuf.subarray(0, a.length);
    file.seekSync(a.offset, Deno.SeekMode.Start);
    for (let done = 0; done < data.length;) {
      const n = file.readSync(data.subarray(done));
      if (n === null || n === 0) return false;
      done += n;
    }
    const err = await this.#sock.send(to, chunkRun(a, this.#headers, data));
    if (err !== undefined) {
      this.stats.sendErrors++;
      return false;
    }
    this.stats.uploaded += a.length;
    return true;
  }

  /** Closes the socket and waits for the receive loop to end. */
  async close(): Promise<void> {
    this.#sock.close();
    await this.#loop?.catch(() => {});
  }

  async #receive(
    chunks: PeerChunkHandler,
    other: PeerDatagramHandler,
    batchEnd: () => void,
  ): Promise<void> {
    try {
      for await (const b of this.#sock.batches()) {
        const now = performance.now();
        const data = b.data;
        const view = new DataView(data.buffer);
        let from: PeerAddress | undefined;
        for (let i = 0; i < b.count; i++) {
          // (a batch from one peer decodes its address once)
          if (from === undefined || !b.samePeer(i, i - 1)) from = b.peer(i);
          if (!from) continue;
          const at = b.offsets[i];
          const len = b.lengths[i];
          if (readChunkReplyHeader(data, view, at, len, this.#header)) {
            chunks(now, from, this.#header, data);
          } else other(now, from, data.subarray(at, at + len));
        }
        batchEnd();
      }
    } catch (e) {
      this.loopError = e instanceof Error ? e.message : String(e);
    }
  }
}
