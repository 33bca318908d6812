/**
 * The transfer state machine with a fake clock, in-memory files and scripted or simulated
 * clients: lock-step, windows, OACK, rollover, duplicates (sorcerer's apprentice), timeouts,
 * the unproven-address cap, errors; and a seeded lossy-channel simulation as a property.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { type FileReader, OctetSource } from "../../lib/tftp/block_source.ts";
import {
  decode,
  encodeAck,
  encodeError,
  encodeOack,
  type TftpPacket,
} from "../../lib/tftp/tftp_packet.ts";
import {
  BURST_GAP_MS,
  MAX_RETRIES,
  MIN_RTO_MS,
  TftpTransfer,
  type TransferConfig,
  type TransferOutput,
  UNPROVEN_SENDS,
  UNPROVEN_TIMEOUT_MS,
} from "../../lib/tftp/tftp_transfer.ts";
import { seededBytes } from "../harness.ts";
import { mulberry32 } from "../relay.ts";

function reader(bytes: Uint8Array): FileReader {
  return {
    readAt(buf, offset) {
      if (offset + buf.length > bytes.length) return false;
      buf.set(bytes.subarray(offset, offset + buf.length));
      return true;
    },
  };
}

function transfer(file: Uint8Array, cfg: Partial<TransferConfig> = {}): TftpTransfer {
  const c: TransferConfig = { blksize: 512, windowsize: 1, timeoutMs: 1000, ...cfg };
  return new TftpTransfer(c, new OctetSource(reader(file), file.length, c.blksize));
}

/** Decodes (copies of) what an output says to send. */
function sent(out: TransferOutput): TftpPacket[] {
  return out.sends.map((d) => {
    const r = decode(d.slice());
    assert.ok(r.ok);
    return r.packet;
  });
}

function dataBlocks(out: TransferOutput): number[] {
  return sent(out).map((p) => {
    assert.equal(p.op, "data");
    return p.op === "data" ? p.block : -1;
  });
}

/** A lock-step client that ACKs every block at once; returns the bytes and the datagram count. */
function fetchLockStep(t: TftpTransfer): { bytes: Uint8Array; datagrams: number } {
  const parts: number[] = [];
  let out = t.start(0);
  let datagrams = 0;
  let now = 0;
  let expect = 1;
  for (;;) {
    const ps = sent(out);
    datagrams += ps.length;
    if (out.end) {
      assert.deepEqual(out.end, { ok: true });
      return { bytes: Uint8Array.from(parts), datagrams };
    }
    assert.equal(ps.length, 1);
    const p = ps[0];
    let ack = 0;
    if (p.op === "data") {
      assert.equal(p.block, expect & 0xffff);
      for (const b of p.data) parts.push(b);
      ack = p.block;
      expect++;
    } else {
      assert.equal(p.op, "oack");
    }
    out = t.onDatagram(encodeAck(ack), ++now);
  }
}

Deno.test("transfer: lock-step, byte-identical for edge sizes; the final ACK ends it", () => {
  for (const size of [0, 1, 511, 512, 513, 1024, 5000]) {
    const file = seededBytes(size, size);
    const r = fetchLockStep(transfer(file));
    assert.deepEqual(r.bytes, file, `size ${size}`);
    assert.equal(r.datagrams, Math.floor(size / 512) + 1, "one datagram per block");
  }
});

Deno.test("transfer: an OACK first, DATA 1 after ACK 0", () => {
  const file = seededBytes(3000, 1);
  const oack = encodeOack([{ name: "blksize", value: "1000" }]);
  const t = transfer(file, { blksize: 1000, oack });
  const out = t.start(0);
  assert.deepEqual(out.sends, [oack]);
  assert.equal(t.proven, false);
  assert.deepEqual(dataBlocks(t.onDatagram(encodeAck(0), 1)), [1]);
  assert.equal(t.proven, true);
  const t2 = transfer(file, { blksize: 1000, oack });
  assert.deepEqual(fetchLockStep(t2).bytes, file);
});

Deno.test("transfer: a duplicate ACK is never answered (no sorcerer's apprentice)", () => {
  const t = transfer(seededBytes(5000, 2));
  t.start(0);
  assert.deepEqual(dataBlocks(t.onDatagram(encodeAck(1), 1)), [2]);
  assert.equal(t.onDatagram(encodeAck(1), 2).sends.length, 0, "same ACK again");
  assert.equal(t.onDatagram(encodeAck(0), 3).sends.length, 0, "an older one");
  assert.equal(t.onDatagram(encodeAck(9), 4).sends.length, 0, "one never sent");
  assert.deepEqual(dataBlocks(t.onDatagram(encodeAck(2), 5)), [3]);
  assert.equal(t.stats.retransmits, 0);
});

Deno.test("transfer: the timer retransmits, doubling, retries reset on progress, then it gives up", () => {
  const t = transfer(seededBytes(5000, 3), { timeoutMs: 1000 });
  let out = t.start(0);
  out = t.onDatagram(encodeAck(1), 10); // proven, block 2 out; a round trip of 10 ms measured
  assert.equal(out.timerAt, 10 + 4 * 10, "4 round trips, within the negotiated 1000 ms");
  assert.equal(t.onTimer(30).sends.length, 0, "early tick: nothing");
  out = t.onTimer(50);
  assert.deepEqual(dataBlocks(out), [2], "retransmitted");
  assert.equal(out.timerAt, 50 + 80, "the next wait is doubled (RFC 6298 §5.5)");
  assert.equal(t.stats.timeouts, 1, "counted as a time-out");
  // (Karn: the ACK of a resent block measures nothing)
  out = t.onDatagram(encodeAck(2), 150);
  assert.deepEqual(dataBlocks(out), [3]);
  assert.equal(out.timerAt, 150 + 40, "progress: back to 4 round trips");
  // a client that pauses (writing flash) gets up to its negotiated time-out per retry
  let now = 150;
  const waits = [40, 80, 160, 320, 640];
  for (let i = 0; i < MAX_RETRIES; i++) {
    now += waits[i];
    assert.deepEqual(dataBlocks(t.onTimer(now)), [3], `retry ${i + 1}`);
  }
  assert.equal(t.onTimer(now + 999).sends.length, 0, "capped at the negotiated 1000 ms");
  out = t.onTimer(now + 1000);
  assert.equal(out.sends.length, 0);
  assert.deepEqual(out.end, { ok: false, reason: "timed out" });
  assert.equal(out.timerAt, Infinity);
  assert.equal(t.onDatagram(encodeAck(3), now + 1001).sends.length, 0, "ended is ended");
});
Deno.test("transfer: the measured timeout stays between MIN_RTO_MS and the negotiated one", () => {
  const fast = transfer(seededBytes(5000, 3), { timeoutMs: 1000 });
  fast.start(0);
  assert.equal(fast.onDatagram(encodeAck(1), 0.1).timerAt, 0.1 + MIN_RTO_MS, "loopback: the floor");
  const slow = transfer(seededBytes(5000, 3), { timeoutMs: 100 });
  slow.start(0);
  assert.equal(slow.onDatagram(encodeAck(1), 60).timerAt, 160, "4 × 60 ms: the client's 100");
});
Deno.test("transfer: before any ACK, the first datagram goes out at most UNPROVEN_SENDS times", () => {
  for (const oack of [undefined, encodeOack([{ name: "tsize", value: "5000" }])]) {
    const t = transfer(seededBytes(5000, 4), { timeoutMs: 100, oack });
    let bytes = 0;
    let datagrams = 0;
    const count = (o: TransferOutput) => {
      datagrams += o.sends.length;
      for (const s of o.sends) bytes += s.length;
      return o;
    };
    count(t.start(0));
    count(t.onRequestRepeated(1)); // the client asks again
    let now = 1;
    let out: TransferOutput;
    do {
      now += 100;
      out = count(t.onTimer(now));
      count(t.onRequestRepeated(now));
    } while (!out.end);
    assert.equal(datagrams, UNPROVEN_SENDS);
    assert.ok(bytes <= UNPROVEN_SENDS * (4 + 512));
    assert.deepEqual(out.end, { ok: false, reason: "no ACK from the client's address" });
  }
});

Deno.test("transfer: the client's timeout is trusted only once its address is proven", () => {
  const oack = encodeOack([{ name: "timeout", value: "255" }]);
  const t = transfer(seededBytes(5000, 8), { timeoutMs: 255_000, oack });
  assert.equal(t.start(0).timerAt, UNPROVEN_TIMEOUT_MS, "a forged request cannot hold a slot");
  let out = t.onTimer(UNPROVEN_TIMEOUT_MS);
  assert.equal(out.sends.length, 1);
  assert.equal(t.stats.retransmits, 1);
  out = t.onTimer(2 * UNPROVEN_TIMEOUT_MS);
  out = t.onTimer(3 * UNPROVEN_TIMEOUT_MS);
  assert.ok(out.end && !out.end.ok, "gone within UNPROVEN_SENDS timeouts");
  // proven: the cap is gone; the time-out is 4 round trips of the OACK's (here 900 ms)
  const u = transfer(seededBytes(5000, 8), { timeoutMs: 255_000, oack });
  u.start(0);
  assert.equal(u.onDatagram(encodeAck(0), 900).timerAt, 900 + 4 * 900);
});

Deno.test("transfer: block numbers roll over; any size goes through", () => {
  const blocks = 70_000; // > 65535
  const file = seededBytes(8 * blocks + 3, 5);
  const r = fetchLockStep(transfer(file, { blksize: 8 }));
  assert.deepEqual(r.bytes, file);
  assert.equal(r.datagrams, blocks + 1);
});

Deno.test("transfer: windows of W blocks; a gap restarts the window after the ACKed block", () => {
  const file = seededBytes(10 * 100 + 50, 6); // 11 blocks of 100
  const t = transfer(file, { blksize: 100, windowsize: 4, oack: encodeOack([]) });
  t.start(0);
  assert.deepEqual(dataBlocks(t.onDatagram(encodeAck(0), 1)), [1, 2, 3, 4]);
  assert.deepEqual(dataBlocks(t.onDatagram(encodeAck(4), 2)), [5, 6, 7, 8]);
  // a gap: the client missed 7, so the window was too much for it: from 7, in halves
  let out = t.onDatagram(encodeAck(6), 3);
  assert.deepEqual(dataBlocks(out), [7, 8], "gap after 6: the first half-burst");
  assert.equal(out.timerAt, 3 + BURST_GAP_MS, "the rest is timed");
  assert.deepEqual(dataBlocks(t.onTimer(3 + BURST_GAP_MS)), [9, 10]);
  assert.equal(t.onDatagram(encodeAck(6), 5).sends.length, 0, "the same gap again: ignored");
  out = t.onTimer(1004);
  assert.deepEqual(dataBlocks(out), [7], "timeout: the window again, halved once more");
  for (let now = 1005, b = 8; b <= 10; now++, b++) {
    assert.deepEqual(dataBlocks(t.onTimer(now)), [b]);
  }
  out = t.onDatagram(encodeAck(10), 1010);
  assert.deepEqual(dataBlocks(out), [11], "stops after the last block");
  assert.equal(t.sentAll, true);
  assert.equal(t.stats.losses, 2);
});
Deno.test("transfer: an ERROR from the client ends it; other junk is ignored", () => {
  const t = transfer(seededBytes(5000, 7));
  t.start(0);
  assert.equal(t.onDatagram(new Uint8Array([0, 3, 0, 1, 9]), 1).sends.length, 0, "DATA to us");
  assert.equal(t.onDatagram(new Uint8Array([1]), 2).sends.length, 0);
  const out = t.onDatagram(encodeError(8, "options refused"), 3);
  assert.equal(out.sends.length, 0);
  assert.deepEqual(out.end, { ok: false, reason: 'client sent ERROR 8 "options refused"' });
});

Deno.test("transfer: a read error sends ERROR 0 and ends it", () => {
  const t = new TftpTransfer(
    { blksize: 512, windowsize: 1, timeoutMs: 1000 },
    new OctetSource({ readAt: () => false }, 5000, 512),
  );
  const out = t.start(0);
  assert.deepEqual(sent(out), [{ op: "error", code: 0, message: "file read error" }]);
  assert.deepEqual(out.end, { ok: false, reason: "file read error" });
});

/**
 * A whole transfer through a seeded channel that drops, duplicates and delays datagrams both
 * ways, with an RFC 1350 / RFC 7440 client (ACK at each window end, re-ACK on its own timeout).
 */
function simulate(
  file: Uint8Array,
  blksize: number,
  windowsize: number,
  loss: number,
  dup: number,
  seed: number,
): { ok: boolean; bytes: Uint8Array; sends: number } {
  const random = mulberry32(seed);
  const t = transfer(file, {
    blksize,
    windowsize,
    timeoutMs: 50,
    oack: windowsize > 1 ? encodeOack([]) : undefined,
    maxRetries: 50,
    unprovenSends: 50,
  });
  type Ev = { at: number; to: "server" | "client" | "timer" | "ctimer"; data?: Uint8Array };
  const q: Ev[] = [];
  const push = (e: Ev) => q.push(e);
  const ship = (to: "server" | "client", data: Uint8Array, now: number) => {
    if (random() < loss) return;
    push({ at: now + 1 + random() * 3, to, data: data.slice() });
    if (random() < dup) push({ at: now + 1 + random() * 3, to, data: data.slice() });
  };
  const got: number[] = [];
  let expect = 1; // next block, unwrapped
  let sinceAck = 0;
  let clientDone = false;
  let sends = 0;
  let serverTimer = Infinity;
  const apply = (out: TransferOutput, now: number) => {
    sends += out.sends.length;
    for (const d of out.sends) ship("client", d, now);
    if (out.timerAt < serverTimer || serverTimer <= now) {
      serverTimer = out.timerAt;
      if (out.timerAt !== Infinity) push({ at: out.timerAt, to: "timer" });
    }
    return out.end;
  };
  let end = apply(t.start(0), 0);
  push({ at: 80, to: "ctimer" });
  let steps = 0;
  while (!end && q.length > 0 && steps++ < 2_000_000) {
    q.sort((a, b) => a.at - b.at);
    const e = q.shift()!;
    const now = e.at;
    if (e.to === "timer") {
      if (now >= serverTimer) serverTimer = Infinity;
      end = apply(t.onTimer(now), now);
    } else if (e.to === "server") {
      end = apply(t.onDatagram(e.data!, now), now);
    } else if (e.to === "ctimer") {
      if (clientDone) continue;
      ship("server", encodeAck((expect - 1) & 0xffff), now); // client timeout: re-ACK
      push({ at: now + 80, to: "ctimer" });
    } else {
      const r = decode(e.data!);
      if (!r.ok) continue;
      const p = r.packet;
      if (p.op === "oack") {
        if (expect === 1) ship("server", encodeAck(0), now);
      } else if (p.op === "data") {
        if (p.block !== (expect & 0xffff)) {
          // out of order or old: an RFC 7440 client ACKs what it has
          if (windowsize > 1) ship("server", encodeAck((expect - 1) & 0xffff), now);
          continue;
        }
        for (const b of p.data) got.push(b);
        expect++;
        sinceAck++;
        const last = p.data.length < blksize;
        if (last) clientDone = true;
        if (last || sinceAck >= windowsize) {
          sinceAck = 0;
          ship("server", encodeAck(p.block), now);
        }
      }
    }
  }
  return { ok: end?.ok === true, bytes: Uint8Array.from(got), sends };
}

Deno.test("transfer: through loss, duplication and reordering, the bytes arrive intact", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 6000 }),
      fc.constantFrom(8, 100, 512),
      fc.constantFrom(1, 2, 4, 8),
      fc.constantFrom(0, 0.05, 0.2),
      fc.constantFrom(0, 0.1),
      fc.nat(),
      (size, blksize, windowsize, loss, dup, seed) => {
        const file = seededBytes(size, seed);
        const r = simulate(file, blksize, windowsize, loss, dup, seed);
        // the server may time out on the final ACK only; the client always has it all
        assert.deepEqual(r.bytes, file);
        if (loss === 0) assert.ok(r.ok, "no loss: ends with the final ACK");
      },
    ),
    { seed: 9, numRuns: 150 },
  );
});

/**
 * A client with a socket buffer of `buffer` datagrams, drained one per `drainMs`, that ACKs at
 * each window's end, ignores blocks out of order (as atftp does: "got wrong block, ignoring")
 * and re-ACKs only on its own 5 s time-out; the server's datagrams arrive 0.05 ms after sending
 * (a share `loss` of them never does).
 * Returns the bytes and the simulated time the transfer took.
 */
function boundedClient(
  file: Uint8Array,
  blksize: number,
  windowsize: number,
  buffer: number,
  loss = 0,
) {
  const random = mulberry32(7);
  const t = transfer(file, { blksize, windowsize, timeoutMs: 1000, oack: encodeOack([]) });
  const inbox: { at: number; data: Uint8Array }[] = []; // in the client's socket
  const inFlight: { at: number; data: Uint8Array }[] = [];
  const got: number[] = [];
  let expect = 1;
  let since = 0;
  let now = 0;
  let timerAt = Infinity;
  let clientFree = 0;
  let lastProgress = 0;
  const drainMs = 0.02;
  const apply = (out: TransferOutput) => {
    for (const d of out.sends) inFlight.push({ at: now + 0.05, data: d.slice() });
    timerAt = out.timerAt;
    return out.end;
  };
  let end = apply(t.start(0));
  const ack = (block: number) => (end ??= apply(t.onDatagram(encodeAck(block & 0xffff), now)));
  for (let steps = 0; !end && steps < 5_000_000; steps++) {
    // the next event: a datagram reaching the socket, the client reading one, or a timer
    const arrive = inFlight.length > 0 ? inFlight[0].at : Infinity;
    const read = inbox.length > 0 ? Math.max(clientFree, inbox[0].at) : Infinity;
    const clientTimer = lastProgress + 5000;
    now = Math.min(arrive, read, timerAt, clientTimer);
    if (now === arrive) {
      const d = inFlight.shift()!;
      // a full socket buffer drops it; so does the path, at random, with `loss`
      if (inbox.length < buffer && !(loss > 0 && random() < loss)) inbox.push(d);
    } else if (now === read) {
      clientFree = now + drainMs;
      const r = decode(inbox.shift()!.data);
      if (!r.ok) continue;
      const p = r.packet;
      if (p.op === "oack") ack(0);
      if (p.op !== "data" || p.block !== (expect & 0xffff)) continue; // ignored, no ACK
      for (const b of p.data) got.push(b);
      expect++;
      lastProgress = now;
      const last = p.data.length < blksize;
      if (last || ++since >= windowsize) {
        since = 0;
        ack(p.block);
      }
    } else if (now === timerAt) {
      end = apply(t.onTimer(now));
    } else {
      lastProgress = now;
      ack(expect - 1); // the client's own time-out
    }
  }
  return { bytes: Uint8Array.from(got), ms: now, losses: t.stats.losses };
}

Deno.test("transfer: a window larger than the client's socket buffer is paced, not lost again and again", () => {
  // atftp asked for 32 blocks of 8 KiB; Linux's default buffer holds about 11 of them. Sent in
  // one burst, every window lost its tail, and each loss cost a time-out: 64 MiB took 226 s
  const file = seededBytes(4 << 20, 12); // 512 blocks of 8 KiB
  const paced = boundedClient(file, 8192, 32, 11);
  assert.deepEqual(paced.bytes, file);
  const lockStep = boundedClient(file, 8192, 1, 11);
  assert.deepEqual(lockStep.bytes, file);
  assert.ok(paced.losses <= 4, `${paced.losses} windows with losses`);
  // not yet as fast as lock-step (bursts are timed in whole milliseconds), but no time-outs:
  // one per window would be 16 s
  assert.ok(paced.ms < 200, `windowsize 32: ${paced.ms} ms; lock-step: ${lockStep.ms} ms`);
});

Deno.test("transfer: a burst that keeps overflowing the client is probed ever more rarely", () => {
  // atftp asked for 8 blocks of 32 KiB, and its socket buffer holds about 5: every probe of
  // the full window loses its tail and costs a time-out (MIN_RTO_MS). 64 MiB took 0.8 s where
  // lock-step took 0.28 s. Probing less often after each failed probe bounds that cost.
  const file = seededBytes(16 << 20, 13); // 2048 blocks of 8 KiB, 256 windows of 8
  const windowed = boundedClient(file, 8192, 8, 5);
  assert.deepEqual(windowed.bytes, file);
  assert.ok(windowed.losses <= 6, `${windowed.losses} windows with losses`);
});

Deno.test("transfer: random loss below the size that last lost does not slow the probes down", () => {
  // 0.1 % of datagrams lost at random, a client that takes whole windows: losses come at any
  // burst size, not only past the last one that lost, and must not stretch the wait between
  // probes. (Deterministic: 2539 simulated ms; counting every loss as a failed probe, 2780.)
  const file = seededBytes(16 << 20, 14); // 32768 blocks of 512 B, windows of 64
  const r = boundedClient(file, 512, 64, 64, 0.001);
  assert.deepEqual(r.bytes, file);
  assert.ok(r.ms < 2660, `${r.ms.toFixed(0)} ms, ${r.losses} windows with losses`);
});
