/**
 * The batched datagram layer on real loopback sockets (and, where the kernel cannot be made to
 * misbehave on demand, on a scripted libc): GRO splitting, GSO runs, the fallback on the same
 * traffic, shutdown while a wait is pending, truncation and malformed input.
 */

import assert from "node:assert/strict";
import { BatchedSocket } from "../../../lib/io/udp/batched_socket.ts";
import { DenoSocket } from "../../../lib/io/udp/deno_socket.ts";
import {
  type DatagramSocket,
  type ReceivedBatch,
  SEND_TOO_BIG,
  type SendRun,
  single,
} from "../../../lib/io/udp/datagram_socket.ts";
import { C, type Libc, loadLibc } from "../../../lib/io/udp/libc.ts";
import { PeerAddress } from "../../../lib/io/udp/peer_address.ts";
import { seededBytes } from "../../harness.ts";
import { mulberry32 } from "../../relay.ts";

function libc(): Libc {
  const l = loadLibc();
  if (typeof l === "string") throw new Error(`the suite runs with --allow-ffi: ${l}`);
  return l;
}

function batched(maxDatagram = 65536, connect?: PeerAddress, gro = true): BatchedSocket {
  return BatchedSocket.open(libc(), { hostname: "127.0.0.1", port: 0, maxDatagram, connect, gro });
}

function peerOf(s: DatagramSocket): PeerAddress {
  return PeerAddress.of("127.0.0.1", s.localAddr.port);
}

/** Collects `want` datagrams (copies) from `s`, or what came before the batches stop. */
async function collect(
  s: DatagramSocket,
  want: number,
  onBatch?: (b: ReceivedBatch) => void,
): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  for await (const b of s.batches()) {
    onBatch?.(b);
    for (let i = 0; i < b.count; i++) {
      got.push(b.data.slice(b.offsets[i], b.offsets[i] + b.lengths[i]));
    }
    if (got.length >= want) break;
  }
  return got;
}

/** A run of `count` datagrams: a 4-byte index prefix each, `segment` bytes of `payload` each. */
function indexedRun(payload: Uint8Array, segment: number): SendRun {
  const count = Math.ceil(payload.length / segment);
  const prefixes = new Uint8Array(4 * count);
  const v = new DataView(prefixes.buffer);
  for (let i = 0; i < count; i++) v.setUint32(4 * i, i);
  return { prefixes, prefixLength: 4, payload, segment, count };
}

function expectedDatagrams(run: SendRun): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < run.count; i++) {
    const part = run.payload.subarray(i * run.segment, (i + 1) * run.segment);
    const d = new Uint8Array(run.prefixLength + part.length);
    d.set(run.prefixes.subarray(i * run.prefixLength, (i + 1) * run.prefixLength));
    d.set(part, run.prefixLength);
    out.push(d);
  }
  return out;
}

Deno.test("batched: a GSO run arrives as its datagrams, GRO split, the short last one too", async () => {
  const rx = batched();
  const tx = batched(2048);
  try {
    assert.deepEqual(rx.features, ["gso", "gro"], "this kernel has both");
    const run = indexedRun(seededBytes(100 * 1444 - 700, 1), 1444);
    const want = expectedDatagrams(run);
    let segmented = false;
    const got = collect(rx, want.length, (b) => {
      for (let i = 1; i < b.count; i++) {
        if (b.offsets[i] - b.offsets[i - 1] === 1448) segmented = true;
      }
    });
    assert.equal(await tx.send(peerOf(rx), run), undefined);
    const all = await got;
    assert.deepEqual(all, want, "same bytes, same order, last datagram 744 bytes");
    assert.equal(all[all.length - 1].length, 4 + 1444 - 700);
    assert.ok(segmented, "several datagrams came in one GRO message and were split");
    assert.ok(tx.stats.sendCalls < 5, `one call per 64 messages: ${tx.stats.sendCalls}`);
    assert.ok(rx.stats.receiveCalls < want.length / 4, `batched: ${rx.stats.receiveCalls}`);
  } finally {
    rx.close();
    tx.close();
  }
});

Deno.test("batched and fallback layers see the same traffic as the same datagrams", async () => {
  const viaFfi = batched();
  const viaDeno = DenoSocket.open({ hostname: "127.0.0.1", port: 0, maxDatagram: 65536 });
  const tx = batched(2048);
  try {
    const random = mulberry32(7);
    const runs: SendRun[] = [];
    for (let k = 0; k < 12; k++) {
      const segment = 1 + Math.floor(random() * 3000);
      const count = 1 + Math.floor(random() * 9);
      runs.push(
        indexedRun(seededBytes(segment * count - Math.floor(random() * segment), k), segment),
      );
    }
    const want = runs.flatMap(expectedDatagrams);
    const a = collect(viaFfi, want.length);
    const b = collect(viaDeno, want.length);
    for (const r of runs) {
      // one run at a time, so neither receiver's buffer can overflow
      assert.equal(await tx.send(peerOf(viaFfi), r), undefined);
      assert.equal(await tx.send(peerOf(viaDeno), r), undefined);
    }
    assert.deepEqual(await a, want);
    assert.deepEqual(await b, want);
  } finally {
    viaFfi.close();
    viaDeno.close();
    tx.close();
  }
});

Deno.test("batched: close() ends a pending wait at once, and later sends say so", async () => {
  const s = batched();
  const loop = collect(s, 1);
  await new Promise((r) => setTimeout(r, 20)); // let the loop reach its poll (an FFI thread)
  assert.ok(s.stats.waits >= 1, "a wait is pending");
  const t0 = performance.now();
  s.close();
  assert.deepEqual(await loop, [], "the iteration ends, no datagram invented");
  assert.ok(performance.now() - t0 < 1000, "promptly");
  assert.equal(await s.send(peerOf(s), single(new Uint8Array(1))), "socket closed");
  s.close(); // idempotent
});

Deno.test("batched: a connected socket hears only its peer and reports ICMP refusals", async () => {
  const server = batched(2048);
  const other = batched(2048);
  const client = batched(2048, peerOf(server));
  try {
    const got = collect(client, 1);
    assert.equal(await other.send(peerOf(client), single(new Uint8Array([9]))), undefined);
    assert.equal(await server.send(peerOf(client), single(new Uint8Array([1, 2]))), undefined);
    assert.deepEqual(await got, [new Uint8Array([1, 2])], "the stranger's datagram is not seen");
    // a closed port answers with ICMP port unreachable: the connected socket is told
    const lonely = batched(2048);
    const port = lonely.localAddr.port;
    lonely.close();
    const dead = batched(2048, PeerAddress.of("127.0.0.1", port));
    let soft: string | undefined;
    const ended = (async () => {
      for await (const b of dead.batches()) {
        soft = b.softError;
        if (soft) break;
      }
    })();
    await dead.send(undefined, single(new Uint8Array([1])));
    await ended;
    assert.match(soft ?? "", /refused/i);
    dead.close();
  } finally {
    server.close();
    other.close();
    client.close();
  }
});

Deno.test("batched: fuzz — random and oversized datagrams are delivered intact or counted as dropped", async () => {
  const MAX = 1500;
  // without GRO the slots are sized to the largest datagram expected (with it, 64 KiB each)
  const rx = batched(MAX, undefined, false);
  const tx = DenoSocket.open({ hostname: "127.0.0.1", port: 0, maxDatagram: 2048 });
  try {
    const random = mulberry32(99);
    const sent: Uint8Array[] = [];
    let oversized = 0;
    const N = 400;
    for (let i = 0; i < N; i++) {
      const len = random() < 0.1
        ? MAX + 1 + Math.floor(random() * 8000)
        : Math.floor(random() * MAX);
      const d = seededBytes(len, i);
      if (len > MAX) oversized++;
      else sent.push(d);
    }
    let dropped = 0;
    const got = collect(rx, sent.length, (b) => dropped += b.dropped);
    const r2 = mulberry32(99);
    for (let i = 0; i < N; i++) {
      const len = r2() < 0.1 ? MAX + 1 + Math.floor(r2() * 8000) : Math.floor(r2() * MAX);
      assert.equal(await tx.send(peerOf(rx), single(seededBytes(len, i))), undefined);
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5)); // within the buffer
    }
    assert.deepEqual(await got, sent, "every datagram that fits, byte for byte, in order");
    // the oversized ones may share a batch with the last datagram that fits: wait for them
    for (let t = 0; t < 50 && rx.stats.truncated < oversized; t++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(rx.stats.truncated, oversized);
  } finally {
    rx.close();
    tx.close();
  }
});

/** A scripted libc: the calls a socket makes, answered as the test says. */
function scriptedLibc(script: {
  sendmmsg: (calls: number) => number;
  setsockopt?: (level: number, opt: number) => number;
  errno: () => number;
}): { libc: Libc; polls: number[]; sets: string[] } {
  const polls: number[] = [];
  const armed = new Map<number, number>();
  const sets: string[] = [];
  let sends = 0;
  const sym = {
    socket: () => 3,
    bind: () => 0,
    connect: () => 0,
    setsockopt: (_fd: number, level: number, opt: number, v: Uint8Array) => {
      const rc = script.setsockopt?.(level, opt) ?? 0;
      if (rc === 0) sets.push(`${level}/${opt}=${new DataView(v.buffer).getInt32(0, true)}`);
      return rc;
    },
    getsockopt: (_fd: number, _l: number, _o: number, v: Uint8Array) => {
      new DataView(v.buffer).setInt32(0, 212992, true);
      return 0;
    },
    getsockname: (_fd: number, sa: Uint8Array, len: Uint8Array) => {
      sa.set(PeerAddress.of("127.0.0.1", 4242).sockaddr);
      new DataView(len.buffer).setUint32(0, 16, true);
      return 0;
    },
    sendmmsg: () => script.sendmmsg(sends++),
    recvmmsg: () => -1,
    // one epoll set: what is armed is ready at once (and recorded)
    epoll_create1: () => 5,
    epoll_ctl: (_ep: number, op: number, fd: number, ev: Uint8Array) => {
      const events = new DataView(ev.buffer).getUint32(0, true) & ~C.EPOLLONESHOT;
      if (op === C.EPOLL_CTL_DEL) armed.delete(fd);
      else if (fd === 3) (armed.set(fd, events), polls.push(events));
      return 0;
    },
    epollWait: (_ep: number, out: Uint8Array) => {
      const v = new DataView(out.buffer);
      let n = 0;
      for (const [fd, events] of armed) {
        v.setUint32(12 * n, events, true);
        v.setBigInt64(12 * n + 4, BigInt(fd), true);
        n++;
      }
      armed.clear();
      return Promise.resolve(n);
    },
    eventfd: () => 4,
    write: () => 8n,
    close: () => 0,
  };
  const libc = {
    sym,
    errno: script.errno,
    describe: (e: number) => `errno ${e}`,
    address: () => 0x10000,
  } as unknown as Libc;
  return { libc, polls, sets };
}

Deno.test("batched: a partial sendmmsg resumes where it stopped; EAGAIN waits for POLLOUT", async () => {
  // 200 datagrams of 1472 B: 44 per GSO message, so 5 messages; the kernel takes 2, then the
  // buffer is full once, then it takes the rest
  const replies = [2, -1, 3];
  const { libc, polls } = scriptedLibc({
    sendmmsg: (n) => replies[n] ?? 0,
    errno: () => C.EAGAIN,
  });
  const s = BatchedSocket.open(libc, { hostname: "127.0.0.1", port: 0, maxDatagram: 2048 });
  const run = indexedRun(new Uint8Array(200 * 1444), 1444);
  assert.equal(await s.send(PeerAddress.of("127.0.0.1", 9), run), undefined);
  assert.equal(s.stats.sendCalls, 3);
  assert.equal(s.stats.sendBlocked, 1);
  assert.deepEqual(polls, [C.EPOLLOUT], "waited for room once");
  s.close();
});

Deno.test("batched: a receive buffer that cannot be raised is reported as the kernel's", () => {
  const { libc } = scriptedLibc({
    sendmmsg: () => 0,
    setsockopt: (level) => level === C.SOL_SOCKET ? -1 : 0,
    errno: () => C.EINVAL,
  });
  const s = BatchedSocket.open(libc, { hostname: "127.0.0.1", port: 0, maxDatagram: 2048 });
  assert.equal(s.receiveBuffer, 212992, "what getsockopt says, not what was asked for");
  assert.deepEqual(s.localAddr, { transport: "udp", hostname: "127.0.0.1", port: 4242 });
  s.close();
});

Deno.test("batched: a device that cannot segment (EIO on a GSO send) falls back to one datagram per message", async () => {
  let calls = 0;
  const { libc } = scriptedLibc({
    sendmmsg: () => (++calls === 1 ? -1 : 64),
    errno: () => C.EIO,
  });
  const s = BatchedSocket.open(libc, { hostname: "127.0.0.1", port: 0, maxDatagram: 2048 });
  assert.ok(s.features.includes("gso"));
  const run = indexedRun(new Uint8Array(100 * 1444), 1444);
  assert.equal(await s.send(PeerAddress.of("127.0.0.1", 9), run), undefined);
  assert.ok(!s.features.includes("gso"), "gso turned off");
  assert.equal(s.stats.sendCalls, 3, "the failed call, then 64 + 36 single-datagram messages");
  s.close();
});

Deno.test("batched: EINVAL on a GSO send (segments over the path MTU) costs that run its GSO, not the socket", async () => {
  // one client asking for blocks its path cannot carry must not slow the server for everyone
  const script = [-1, 64, 36, 3];
  let calls = 0;
  const { libc } = scriptedLibc({ sendmmsg: () => script[calls++] ?? -1, errno: () => C.EINVAL });
  const s = BatchedSocket.open(libc, { hostname: "127.0.0.1", port: 0, maxDatagram: 2048 });
  const to = PeerAddress.of("127.0.0.1", 9);
  assert.equal(await s.send(to, indexedRun(new Uint8Array(100 * 1444), 1444)), undefined);
  assert.equal(calls, 3, "refused, then 64 + 36 single-datagram messages");
  assert.ok(s.features.includes("gso"), "still on");
  assert.equal(await s.send(to, indexedRun(new Uint8Array(100 * 1444), 1444)), undefined);
  assert.equal(calls, 4, "the next run is one call again: 3 GSO messages of 45 + 45 + 10");
  // refused again and again with nothing accepted between: this kernel will not segment
  for (let i = 0; i < 8; i++) await s.send(to, indexedRun(new Uint8Array(100 * 1444), 1444));
  assert.ok(!s.features.includes("gso"), "off after 8 refusals in a row");
  s.close();
});

Deno.test("batched: an unfragmented run sets don't-fragment around it; too big is SEND_TOO_BIG", async () => {
  let calls = 0;
  const { libc, sets } = scriptedLibc({
    sendmmsg: () => (++calls === 1 ? -1 : 1),
    errno: () => C.EMSGSIZE,
  });
  const s = BatchedSocket.open(libc, { hostname: "127.0.0.1", port: 0, maxDatagram: 2048 });
  assert.ok(s.unfragmented);
  const mtuOption = `${C.IPPROTO_IP}/${C.IP_MTU_DISCOVER}`;
  sets.length = 0;
  const to = PeerAddress.of("127.0.0.1", 9);
  const probe = { ...single(new Uint8Array(8972)), unfragmented: true };
  assert.equal(await s.send(to, probe), SEND_TOO_BIG);
  assert.deepEqual(sets, [`${mtuOption}=${C.IP_PMTUDISC_PROBE}`]);
  assert.equal(await s.send(to, single(new Uint8Array(100))), undefined);
  assert.deepEqual(sets.at(-1), `${mtuOption}=212992`, "back to the value it had (scripted)");
  assert.equal(await s.send(to, single(new Uint8Array(100))), undefined);
  assert.equal(sets.length, 2, "no option call while it stays the same");
  s.close();
  // a kernel that will not switch it: the socket says so, and refuses such runs
  const { libc: fixed } = scriptedLibc({
    sendmmsg: () => 1,
    setsockopt: (level) => level === C.IPPROTO_IP ? -1 : 0,
    errno: () => C.ENOPROTOOPT,
  });
  const t = BatchedSocket.open(fixed, { hostname: "127.0.0.1", port: 0, maxDatagram: 2048 });
  assert.equal(t.unfragmented, false);
  assert.notEqual(await t.send(to, probe), undefined);
  t.close();
});

Deno.test("batched: close() while the consumer holds a batch ends the loop, and the process can exit", async () => {
  // the server's shape: it awaits inside the loop body, and a stop arrives meanwhile; a channel
  // or a wait left behind would keep the process alive, so this runs as its own process
  const dir = await Deno.makeTempDir();
  const script = `${dir}/close_in_body.ts`;
  const layer = new URL("../../../lib/io/udp/", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { BatchedSocket } from "${layer}batched_socket.ts";
import { single } from "${layer}datagram_socket.ts";
import { loadLibc } from "${layer}libc.ts";
import { PeerAddress } from "${layer}peer_address.ts";
const libc = loadLibc();
if (typeof libc === "string") throw new Error(libc);
const o = { hostname: "127.0.0.1", port: 0, maxDatagram: 2048 };
const rx = BatchedSocket.open(libc, o);
const tx = BatchedSocket.open(libc, o);
const loop = (async () => {
  for await (const _ of rx.batches()) {
    await new Promise((r) => setTimeout(r, 5));
    rx.close();
  }
})();
await tx.send(PeerAddress.of("127.0.0.1", rx.localAddr.port), single(new Uint8Array([1])));
await loop;
tx.close();
console.log("loop ended");
`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-ffi", "--allow-read", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, 20_000);
  try {
    const out = await child.output();
    assert.equal(hung, false, "the process did not exit after its socket was closed");
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "loop ended");
  } finally {
    clearTimeout(guard);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("batched: a GSO message of 100 segments from this host is split into all 100", async () => {
  const l = libc();
  // one message per receive call: its batch must still hold all 100 datagrams
  const rx = BatchedSocket.open(l, {
    hostname: "127.0.0.1",
    port: 0,
    maxDatagram: 65536,
    slots: 1,
  });
  // a raw socket with a socket-wide UDP_SEGMENT of 100: one write is one 100-segment message
  const fd = l.sym.socket(C.AF_INET, C.SOCK_DGRAM, 0);
  try {
    const to = peerOf(rx).sockaddr;
    assert.equal(l.sym.connect(fd, to, to.length), 0);
    const seg = new Uint8Array(new Int32Array([100]).buffer);
    assert.equal(l.sym.setsockopt(fd, C.SOL_UDP, C.UDP_SEGMENT, seg, 4), 0);
    const payload = seededBytes(100 * 100, 3);
    const got = collect(rx, 100);
    assert.equal(Number(l.sym.write(fd, payload, BigInt(payload.length))), payload.length);
    const all = await got;
    assert.equal(all.length, 100);
    for (let i = 0; i < 100; i++) {
      assert.deepEqual(all[i], payload.subarray(i * 100, (i + 1) * 100), `segment ${i}`);
    }
  } finally {
    l.sym.close(fd);
    rx.close();
  }
});

Deno.test("batched: 100 sockets waiting at once leave Deno's blocking threads free (one epoll wait)", async () => {
  // Deno has 32 blocking threads for file operations and nonblocking FFI calls: a wait per
  // socket took one each, and a fetch from 8 servers with 4 connections hung on its first read
  const sockets = Array.from({ length: 100 }, () => batched(2048));
  const loops = sockets.map((s) => collect(s, 1));
  try {
    await new Promise((r) => setTimeout(r, 20)); // every loop has drained and is waiting now
    const file = await Deno.makeTempFile();
    const read = Deno.readTextFile(file).then(() => "read");
    const hung = new Promise((r) => setTimeout(() => r("no thread for a file read"), 5000));
    assert.equal(await Promise.race([read, hung]), "read");
    await Deno.remove(file);
    const last = sockets[99];
    await sockets[0].send(peerOf(last), single(new Uint8Array([7])));
    assert.deepEqual(await loops[99], [new Uint8Array([7])], "and waits still end on data");
  } finally {
    for (const s of sockets) s.close();
    await Promise.all(loops);
  }
});
