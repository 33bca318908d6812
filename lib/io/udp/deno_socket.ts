/**
 * The fallback datagram layer: a `Deno.listenDatagram` socket behind the batched interface,
 * wherever FFI is not allowed or the platform is not one the batched layer was verified on.
 * Batches hold one datagram (Deno's `receive` returns one per call) received into one reused
 * buffer; a run is sent datagram by datagram, each assembled in one reused send buffer.
 *
 * "Connected" is emulated: datagrams from anyone but the peer are dropped (ICMP errors are not
 * visible to this layer, so a closed port shows up as silence, not as a refusal).
 *
 * @module
 */

import { PeerAddress } from "./peer_address.ts";
import type { DatagramSocket, ReceivedBatch, SendRun } from "./datagram_socket.ts";

/** Options of {@link DenoSocket.open}. */
export interface DenoSocketOptions {
  hostname: string;
  port: number;
  /** Keep only datagrams from this peer, and send to it when `send` names nobody. */
  connect?: PeerAddress;
  /** Largest datagram expected (the receive buffer's size). */
  maxDatagram: number;
}

/** Datagrams of a run in flight at once (their bytes staged side by side). */
const SEND_WINDOW = 64;

/** Deno's default UDP receive buffer (net.core.rmem_default here); it cannot be raised. */
const DEFAULT_RCVBUF = 212992;

/** A UDP socket on `Deno.listenDatagram` (see the module comment). */
export class DenoSocket implements DatagramSocket {
  readonly layer = "deno" as const;
  readonly features: string[] = [];
  readonly receiveBuffer = DEFAULT_RCVBUF;
  readonly localAddr: Deno.NetAddr;
  /** Deno's sockets offer no control over fragmentation. */
  readonly unfragmented = false;
  /** Datagrams dropped because they came from someone other than the connected peer. */
  stray = 0;
  #conn: Deno.DatagramConn;
  #connect: PeerAddress | undefined;
  #buf: Uint8Array;
  #sendBuf: Uint8Array;
  #batch: OneBatch;
  #closed = false;

  private constructor(conn: Deno.DatagramConn, o: DenoSocketOptions) {
    this.#conn = conn;
    this.#connect = o.connect;
    this.localAddr = conn.addr as Deno.NetAddr;
    this.#buf = new Uint8Array(o.maxDatagram + 1);
    this.#sendBuf = new Uint8Array(SEND_WINDOW * 2048);
    this.#batch = new OneBatch(this.#buf);
  }

  /** Binds `hostname:port`; throws what `Deno.listenDatagram` throws. */
  static open(o: DenoSocketOptions): DenoSocket {
    const conn = Deno.listenDatagram({ hostname: o.hostname, port: o.port, transport: "udp" });
    return new DenoSocket(conn, o);
  }

  async *batches(): AsyncIterableIterator<ReceivedBatch> {
    const b = this.#batch;
    while (!this.#closed) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await this.#conn.receive(this.#buf);
      } catch (e) {
        // close() rejects the pending receive: the normal end of the loop
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        if (this.#closed) return;
        throw e;
      }
      const from = got[1] as Deno.NetAddr;
      if (this.#connect && !fromPeer(this.#connect, from)) {
        this.stray++;
        continue;
      }
      if (got[0].length > this.#buf.length - 1) {
        // (the buffer is one byte larger than the largest datagram expected: it was cut short)
        b.count = 0;
        b.dropped = 1;
      } else {
        b.count = 1;
        b.dropped = 0;
      }
      b.from = from;
      b.lengths[0] = got[0].length;
      yield b;
    }
  }

  async send(to: PeerAddress | undefined, run: SendRun): Promise<string | undefined> {
    const peer = to ?? this.#connect;
    if (!peer) return "no destination";
    if (run.unfragmented) return "cannot send unfragmented here";
    if (run.prefixLength === 0 && run.count === 1) return await this.#sendOne(run.payload, peer);
    // each datagram is assembled in its own slice of the staging buffer, and a window of sends
    // is in flight at once: awaiting each send alone costs a turn of the event loop per datagram
    const size = run.prefixLength + run.segment;
    const perWindow = Math.max(1, Math.min(SEND_WINDOW, Math.floor(this.#sendBuf.length / size)));
    for (let first = 0; first < run.count; first += perWindow) {
      const sends: Promise<string | undefined>[] = [];
      for (let i = first; i < Math.min(run.count, first + perWindow); i++) {
        const off = i * run.segment;
        const len = Math.max(0, Math.min(run.segment, run.payload.length - off));
        const at = (i - first) * size;
        const b = this.#sendBuf;
        b.set(run.prefixes.subarray(i * run.prefixLength, (i + 1) * run.prefixLength), at);
        b.set(run.payload.subarray(off, off + len), at + run.prefixLength);
        sends.push(this.#sendOne(b.subarray(at, at + run.prefixLength + len), peer));
      }
      for (const err of await Promise.all(sends)) if (err !== undefined) return err;
    }
    return undefined;
  }

  async #sendOne(bytes: Uint8Array, peer: PeerAddress): Promise<string | undefined> {
    try {
      await this.#conn.send(bytes, peer.netAddr);
      return undefined;
    } catch (e) {
      return e instanceof Error ? e.message.split(" (os error")[0] : String(e);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

function fromPeer(peer: PeerAddress, from: Deno.NetAddr): boolean {
  if (peer.port !== from.port) return false;
  if (peer.hostname === from.hostname) return true;
  try {
    return peer.equals(PeerAddress.of(from.hostname, from.port));
  } catch {
    return false;
  }
}

/** The fallback's batch: one datagram at the start of the receive buffer. */
class OneBatch implements ReceivedBatch {
  count = 1;
  dropped = 0;
  softError: string | undefined = undefined;
  readonly offsets = new Uint32Array(1);
  readonly lengths = new Uint32Array(1);
  from: Deno.NetAddr | undefined;
  #peer: PeerAddress | undefined;
  #peerOf: Deno.NetAddr | undefined;

  constructor(readonly data: Uint8Array) {}

  peer(_i: number): PeerAddress | undefined {
    if (!this.from) return undefined;
    if (this.#peerOf !== this.from) {
      this.#peerOf = this.from;
      try {
        this.#peer = PeerAddress.of(this.from.hostname, this.from.port);
      } catch {
        this.#peer = undefined;
      }
    }
    return this.#peer;
  }

  samePeer(_i: number, _j: number): boolean {
    return true;
  }
}
