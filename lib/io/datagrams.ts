/**
 * Receive loop helper: an async iterator over a UDP socket's datagrams that reuses one
 * buffer. Deno's own iterator allocates (and zeroes) a fresh 64 KiB buffer for every
 * datagram, which at 1400-byte datagrams is most of the receive cost.
 *
 * Each yielded view is only valid until the next iteration: consume it synchronously, or copy.
 *
 * @module
 */

/** Yields `[data, from]` for every datagram until the socket is closed. */
export async function* datagrams(
  sock: Deno.DatagramConn,
  bufferSize = 65536,
): AsyncGenerator<[Uint8Array, Deno.NetAddr]> {
  const buf = new Uint8Array(bufferSize);
  for (;;) {
    let got: [Uint8Array, Deno.Addr];
    try {
      got = await sock.receive(buf);
    } catch (e) {
      // close() rejects the pending receive: that is the normal end of the loop
      if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
      throw e;
    }
    yield [got[0], got[1] as Deno.NetAddr];
  }
}
