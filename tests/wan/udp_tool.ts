/**
 * A small UDP tool run inside a WAN path's namespaces (a test process cannot enter a namespace
 * itself):
 *
 * - `echo HOST PORT`: answers every datagram with itself; prints `listening` once bound.
 * - `probe HOST PORT COUNT SIZE QUIET_MS`: sends COUNT numbered datagrams of SIZE bytes, paced
 *   in small bursts, and prints one JSON line `{ sent, received, rttsMs }` once every echo is
 *   back or nothing has arrived for QUIET_MS after the last send (the rest is lost), and
 *   `elapsedMs` from the first send to the last echo.
 * - `stream HOST PORT INTERVAL_MS`: sends a datagram every INTERVAL_MS until killed and prints
 *   `echo N` (echoes so far) for each echo.
 *
 * @module
 */

const [mode, host, portText, ...rest] = Deno.args;
const port = Number(portText);

function header(seq: number, size: number): Uint8Array {
  const b = new Uint8Array(Math.max(size, 12));
  const v = new DataView(b.buffer);
  v.setUint32(0, seq);
  v.setFloat64(4, performance.now());
  return b;
}

if (mode === "echo") {
  const sock = Deno.listenDatagram({ hostname: host, port, transport: "udp" });
  console.log("listening");
  for await (const [data, from] of sock) await sock.send(data, from);
} else if (mode === "probe") {
  const [count, size, quietMs] = rest.map(Number);
  const sock = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
  const to: Deno.NetAddr = { transport: "udp", hostname: host, port };
  const rtts: number[] = [];
  const seen = new Set<number>();
  const start = performance.now();
  let last = start;
  let lastEcho = start;
  const receiving = (async () => {
    for await (const [data] of sock) {
      const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const seq = v.getUint32(0);
      if (seen.has(seq)) continue;
      seen.add(seq);
      rtts.push(performance.now() - v.getFloat64(4));
      last = lastEcho = performance.now();
      if (seen.size === count) break;
    }
  })().catch(() => {});
  for (let i = 0; i < count; i++) {
    await sock.send(header(i, size), to);
    // pacing, about 2000 a second: bursts would overflow the echo server's socket buffer
    // (212992 bytes) whenever it is short of CPU, and the test is about the link, not that
    if (i % 10 === 9) await new Promise((r) => setTimeout(r, 5));
  }
  last = performance.now();
  while (seen.size < count && performance.now() - last < quietMs) {
    await new Promise((r) => setTimeout(r, 20));
  }
  sock.close();
  await receiving;
  const elapsedMs = lastEcho - start;
  console.log(JSON.stringify({ sent: count, received: seen.size, rttsMs: rtts, elapsedMs }));
} else if (mode === "stream") {
  const [intervalMs] = rest.map(Number);
  const sock = Deno.listenDatagram({ hostname: "0.0.0.0", port: 0, transport: "udp" });
  const to: Deno.NetAddr = { transport: "udp", hostname: host, port };
  let echoes = 0;
  (async () => {
    for await (const _ of sock) console.log(`echo ${++echoes}`);
  })().catch(() => {});
  for (let seq = 0;; seq++) {
    await sock.send(header(seq, 64), to);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
} else {
  console.error("usage: udp_tool.ts echo|probe|stream HOST PORT ...");
  Deno.exit(2);
}
