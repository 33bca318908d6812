/**
 * Microbenchmark M: the JavaScript work per datagram, apart from the kernel crossing, each way.
 *
 * - Receive: GRO-shaped batches of CHUNK_REPLY datagrams (1444-byte blocks answering the engine's
 *   own requests) through the client's code: `ChunkDispatch` (header read in place) →
 *   `FetchSession.handleBlock` → the writer: `VectoredWriter` (one `pwritev` per run, into
 *   /dev/null) where FFI is allowed, else `BlockWriter` copying into runs for a file that
 *   discards. Pieces are declared verified at once (hashing is the verify
 *   worker's, on another thread).
 * - Send: CHUNK_REQUESTs through the server's code: `RequestGate.admit` (decode, address
 *   validation) → `ServeCore` (duplicates, checks, runs) → `writeChunkReplyHeaders` → the
 *   batched socket's `send` laying out `sendmmsg` messages (GSO, 44 datagrams each) over a
 *   scripted libc whose `sendmmsg` returns at once.
 *
 * Prints ns per datagram each way (goal: under 1000).
 *
 * @module
 */

import { FetchSession } from "../lib/engine/fetch_session.ts";
import { ChunkDispatch } from "../lib/io/chunk_dispatch.ts";
import { type BlockSink, BlockWriter } from "../lib/io/block_writer.ts";
import { VectoredWriter } from "../lib/io/vectored_writer.ts";

import type { ReceivedBatch } from "../lib/io/udp/datagram_socket.ts";
import { BatchedSocket } from "../lib/io/udp/batched_socket.ts";
import { type Libc, loadLibc } from "../lib/io/udp/libc.ts";
import { PeerAddress } from "../lib/io/udp/peer_address.ts";
import { RequestGate } from "../lib/serving/request_gate.ts";
import { type RunAction, type ServeAction, ServeCore } from "../lib/serving/serve_core.ts";
import { CookieJar } from "../lib/wire/cookie.ts";
import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkReplyHeader,
  encode,
  writeChunkReplyHeaders,
} from "../lib/wire/packet.ts";

const BLOCK = 1444;
const DATAGRAM = CHUNK_REPLY_HEADER_SIZE + BLOCK;
const FILE_ID = 0x0123456789abcdefn;
const SEGMENTS = 44; // per GRO message
const MESSAGES = 8; // per recvmmsg

/** One measurement: datagrams handled and nanoseconds per datagram. */
export interface MicroResult {
  datagrams: number;
  nsPerDatagram: number;
}

/** A batch over a slab laid out as the batched layer lays out GRO segments. */
class SlabBatch implements ReceivedBatch {
  count = 0;
  dropped = 0;
  softError: string | undefined = undefined;
  readonly data = new Uint8Array(SEGMENTS * MESSAGES * DATAGRAM);
  readonly offsets = new Uint32Array(SEGMENTS * MESSAGES);
  readonly lengths = new Uint32Array(SEGMENTS * MESSAGES);
  peer(): PeerAddress | undefined {
    return undefined;
  }
  samePeer(): boolean {
    return true;
  }
}

/** The receive path over `bytes` of file (see the module comment). */
export function measureReceive(bytes = 512 << 20): MicroResult {
  let now = 0;
  const session = new FetchSession({
    size: bytes,
    pieceSize: 1 << 20,
    blockSize: BLOCK,
    fileId: FILE_ID,
    name: "m.bin",
    nextRequestId: (() => {
      let id = 1;
      return () => id++;
    })(),
    lanes: 1,
    lanMinWindowBytes: 4 << 20,
  }, now);
  session.addSource(0, now, { rttMs: 0.2 });
  // the batched layer's writer (pwritev from the slab) into /dev/null where FFI is allowed
  const libc = loadLibc();
  const writer: BlockSink = typeof libc === "string"
    ? new BlockWriter({ seekSync: () => 0, writeSync: (p) => p.length })
    : VectoredWriter.open(libc, "/dev/null");
  const dispatch = new ChunkDispatch();
  const batch = new SlabBatch();
  const header = new Uint8Array(CHUNK_REPLY_HEADER_SIZE * 1024);
  let datagrams = 0;
  const onChunk = (t: number, _s: number, h: Readonly<ChunkReplyHeader>, data: Uint8Array) => {
    if (session.handleBlock(t, 0, h)) {
      writer.stage(h.offset, data, h.dataAt, h.dataLen);
    }
  };
  const other = () => {};
  const pending: { id: number; offset: number; length: number }[] = [];
  // only the client's own work is timed, not the making of the replies
  let ms = 0;
  while (!session.ended) {
    now += 0.05;
    let t0 = performance.now();
    session.handleTimeout(now);
    for (let t = session.pollTransmit(now); t; t = session.pollTransmit(now)) {
      pending.push({ id: t.packet.requestId, offset: t.packet.offset, length: t.packet.length });
    }
    ms += performance.now() - t0;
    // answer the oldest requests, a batch of GRO-shaped messages at a time
    batch.count = 0;
    while (pending.length > 0 && batch.count < SEGMENTS * MESSAGES) {
      const r = pending[0];
      const room = SEGMENTS * MESSAGES - batch.count;
      const blocks = Math.min(room, Math.ceil(r.length / BLOCK));
      const len = Math.min(blocks * BLOCK, r.length);
      const n = writeChunkReplyHeaders(header, r.id, FILE_ID, r.offset, BLOCK, len);
      for (let k = 0; k < n; k++) {
        const at = batch.count * DATAGRAM;
        batch.data.set(header.subarray(k * 28, k * 28 + 28), at);
        batch.offsets[batch.count] = at;
        batch.lengths[batch.count] = 28 + Math.min(BLOCK, len - k * BLOCK);
        batch.count++;
      }
      r.offset += len;
      r.length -= len;
      if (r.length === 0) pending.shift();
    }
    if (batch.count === 0 && pending.length === 0 && session.pollTimeout(now) === undefined) break;
    t0 = performance.now();
    dispatch.dispatch(batch, now, 0, onChunk, other);
    writer.flush();
    datagrams += batch.count;
    for (let e = session.poll(); e; e = session.poll()) {
      if (e.kind === "verify") session.handleVerified(e.piece, true);
    }
    ms += performance.now() - t0;
  }
  writer.close();
  if (!session.sched.done) throw new Error("the microbenchmark's transfer did not finish");
  return { datagrams, nsPerDatagram: (ms * 1e6) / datagrams };
}

/** A libc whose `sendmmsg` takes every message at once (the kernel crossing left out). */
function instantLibc(): Libc {
  const sym = {
    socket: () => 3,
    bind: () => 0,
    connect: () => 0,
    setsockopt: () => 0,
    getsockopt: () => 0,
    getsockname: (_fd: number, sa: Uint8Array, len: Uint8Array) => {
      sa.set(PeerAddress.of("127.0.0.1", 9000).sockaddr);
      new DataView(len.buffer).setUint32(0, 16, true);
      return 0;
    },
    sendmmsg: (_fd: number, _m: Uint8Array, n: number) => n,
    recvmmsg: () => -1,
    epoll_create1: () => 5,
    epoll_ctl: () => 0,
    epollWait: () => Promise.resolve(0),
    eventfd: () => 4,
    write: () => 8n,
    close: () => 0,
  };
  let address = 0x10000;
  return {
    sym,
    errno: () => 0,
    describe: () => "",
    // a fixed fake address per call: nothing is dereferenced
    address: () => address += 0,
  } as unknown as Libc;
}

/** The send path: `requests` CHUNK_REQUESTs of `requestBytes` each (see the module comment). */
export async function measureSend(requests = 2000, requestBytes = 1 << 20): Promise<MicroResult> {
  const gate = new RequestGate(new CookieJar(new Uint8Array(32).fill(7)), undefined);
  const core = new ServeCore({}, 0);
  const sock = BatchedSocket.open(instantLibc(), {
    hostname: "127.0.0.1",
    port: 0,
    maxDatagram: 2048,
  });
  const peer = PeerAddress.of("10.0.0.2", 40000);
  const token = gate.cookies.issue(peer.hostname, Date.now());
  const payload = new Uint8Array(requestBytes);
  const headers = new Uint8Array(CHUNK_REPLY_HEADER_SIZE * 1024);
  const actions: ServeAction[] = [];
  let datagrams = 0;
  const t0 = performance.now();
  for (let i = 0; i < requests; i++) {
    const bytes = encode({
      type: "chunk_request",
      requestId: i + 1,
      token,
      fileId: FILE_ID,
      offset: (i * requestBytes) % (1 << 30),
      length: requestBytes,
      blockSize: BLOCK,
      name: "m.bin",
    });
    const d = gate.admit(bytes, peer.hostname, Date.now());
    if (d.kind !== "serve" || d.request.type !== "chunk_request") {
      throw new Error(`gate: ${d.kind}`);
    }
    if (core.isDuplicate(i, d.request, peer.hostname, peer.port)) throw new Error("duplicate");
    actions.length = 0;
    core.onChunk(
      i,
      peer.netAddr,
      d.request,
      { fileId: FILE_ID, size: 1 << 30, changed: false },
      actions,
    );
    for (const a of actions as RunAction[]) {
      const count = writeChunkReplyHeaders(
        headers,
        a.requestId,
        a.fileId,
        a.offset,
        BLOCK,
        a.length,
      );
      const err = await sock.send(peer, {
        prefixes: headers,
        prefixLength: CHUNK_REPLY_HEADER_SIZE,
        payload: payload.subarray(0, a.length),
        segment: BLOCK,
        count,
      });
      if (err) throw new Error(err);
      datagrams += count;
    }
  }
  const ms = performance.now() - t0;
  sock.close();
  return { datagrams, nsPerDatagram: (ms * 1e6) / datagrams };
}

if (import.meta.main) {
  for (let i = 0; i < 2; i++) {
    const r = measureReceive();
    const s = await measureSend();
    console.log(
      `receive ${r.nsPerDatagram.toFixed(0)} ns/datagram (${r.datagrams}); ` +
        `send ${s.nsPerDatagram.toFixed(0)} ns/datagram (${s.datagrams})`,
    );
  }
}
