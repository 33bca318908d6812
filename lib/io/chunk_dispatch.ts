/**
 * The client's per-batch hot path: every datagram of a received batch that is a CHUNK_REPLY goes
 * to the chunk handler through the allocation-free header reader (no Packet object, no copy);
 * anything else goes to `other` as a view, to be decoded. Shared by the endpoint and the
 * microbenchmark (`bench/micro.ts`), so the benchmark measures the code that runs.
 *
 * @module
 */

import {
  type ChunkReplyHeader,
  emptyChunkReplyHeader,
  readChunkReplyHeader,
} from "../wire/packet.ts";
import type { ReceivedBatch } from "./udp/datagram_socket.ts";

/**
 * Receives the data of one CHUNK_REPLY from `server` at `now`: the header's fields in `h`, the
 * data at `data[h.dataAt, h.dataAt + h.dataLen)`, valid during the call only.
 */
export type ChunkHandler = (
  now: number,
  server: number,
  h: Readonly<ChunkReplyHeader>,
  data: Uint8Array,
) => void;

/** Splits batches into data (to `chunks`) and everything else (see the module comment). */
export class ChunkDispatch {
  #header: ChunkReplyHeader = emptyChunkReplyHeader();
  #views = new WeakMap<ArrayBufferLike, DataView>();

  /**
   * Hands every datagram of `b` (from `server`, at `now`) to `chunks` when it is a CHUNK_REPLY
   * and `chunks` is set, else to `other` as a view into the batch.
   */
  dispatch(
    b: ReceivedBatch,
    now: number,
    server: number,
    chunks: ChunkHandler | undefined,
    other: (datagram: Uint8Array, server: number) => void,
  ): void {
    const data = b.data;
    let view = this.#views.get(data.buffer);
    if (!view) {
      view = new DataView(data.buffer);
      this.#views.set(data.buffer, view);
    }
    const h = this.#header;
    for (let i = 0; i < b.count; i++) {
      const at = b.offsets[i];
      const len = b.lengths[i];
      if (chunks && readChunkReplyHeader(data, view, at, len, h)) chunks(now, server, h, data);
      else other(data.subarray(at, at + len), server);
    }
  }
}
