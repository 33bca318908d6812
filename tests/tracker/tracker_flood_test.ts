/**
 * `udpget tracker` as a process under a flood: forged and malformed datagrams, then announces
 * for ever new swarms and for one swarm from ever new ports, as fast as it answers. It must go on
 * answering its real peers, keep within its caps, and keep its memory bounded.
 */

import assert from "node:assert/strict";
import {
  encodeConnectRequest,
  parseResponse,
  type TrackerResponse,
} from "../../lib/tracker/bep15_packet.ts";
import { DEFAULT_SWARM_LIMITS } from "../../lib/tracker/swarm_table.ts";
import { withTimeout } from "../../lib/io/timer.ts";
import { seededRandom } from "../../lib/sim/prng.ts";
import { announceRequest, startTracker, TrackerClient } from "./tracker_process.ts";

/** Resident memory of process `pid`, bytes (Linux). */
async function residentBytes(pid: number): Promise<number> {
  // (read by `cat`: Deno lets only --allow-all read /proc files, and the suite runs without it)
  const out = await new Deno.Command("cat", { args: [`/proc/${pid}/status`] }).output();
  const status = new TextDecoder().decode(out.stdout);
  const kib = status.match(/^VmRSS:\s+(\d+) kB$/m);
  assert.ok(kib, "VmRSS in /proc/<pid>/status");
  return Number(kib[1]) * 1024;
}

/** A flooding client: one socket, requests pipelined up to `window` unanswered. */
class Flooder {
  readonly sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  readonly #to: Deno.NetAddr;
  #tid = 1;
  /** Replies by kind: announce, the error text, connect. */
  readonly replies = new Map<string, number>();

  constructor(port: number) {
    this.#to = { transport: "udp", hostname: "127.0.0.1", port };
  }

  /** Sends datagrams nobody should answer; resolves once the tracker has read them all. */
  async unanswered(datagrams: Iterable<Uint8Array>): Promise<void> {
    for (const d of datagrams) await this.sock.send(d, this.#to);
    await this.connect(); // (one socket, read in order: its answer comes after the rest)
  }

  /** A connection id for this address. */
  async connect(): Promise<Uint8Array> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const tid = 0x7000_0000 + this.#tid++;
      await this.sock.send(encodeConnectRequest(tid), this.#to);
      for (;;) {
        const r = await this.#receive(2000);
        if (r === undefined) break; // lost in a full buffer: ask again
        if (r.action === "connect" && r.transactionId === tid) return r.connectionId;
      }
    }
    throw new Error("the tracker does not answer a connect");
  }

  /** Sends every datagram of `requests`, at most `window` unanswered, counting the replies. */
  async pipelined(requests: Iterable<Uint8Array>, window = 128): Promise<void> {
    let waiting = 0;
    for (const r of requests) {
      await this.sock.send(r, this.#to);
      if (++waiting < window) continue;
      const reply = await this.#receive(1000);
      waiting = reply === undefined ? 0 : waiting - 1; // (silence: the rest were lost)
    }
    while (waiting > 0 && await this.#receive(1000) !== undefined) waiting--;
  }

  async #receive(ms: number): Promise<TrackerResponse | undefined> {
    const got = await withTimeout(this.sock.receive(), ms);
    if (got === undefined) return undefined;
    const r = parseResponse(got[0], "ipv4");
    const kind = r === undefined ? "unparsable" : r.action === "error" ? r.message : r.action;
    this.replies.set(kind, (this.replies.get(kind) ?? 0) + 1);
    return r;
  }

  close(): void {
    this.sock.close();
  }
}

/** An announce over `connectionId` for `infoHash` from `port`. */
function announce(connectionId: Uint8Array, infoHash: Uint8Array, port: number, tid: number) {
  const peerId = new Uint8Array(20).fill(port & 0xff);
  return announceRequest({ connectionId, transactionId: tid, infoHash, peerId, numWant: 50, port });
}

/** `n` datagrams no tracker answers: garbage, forged ids, truncated and oversized requests. */
function* junk(n: number, random: () => number, connectionId: Uint8Array): Generator<Uint8Array> {
  const bytes = (k: number) => Uint8Array.from({ length: k }, () => (random() * 256) | 0);
  const hash = new Uint8Array(20);
  for (let i = 0; i < n; i++) {
    switch (i % 4) {
      case 0: // random bytes, 0 to 150 long
        yield bytes((random() * 151) | 0);
        break;
      case 1: // an announce over a forged connection id
        yield announce(bytes(8), hash, 1 + (i % 60_000), i);
        break;
      case 2: // a real announce cut short (no answer: it is not a request)
        yield announce(connectionId, hash, 1 + (i % 60_000), i).subarray(0, 16 + (i % 80));
        break;
      default: // longer than any request
        yield bytes(2049 + (i % 1000));
    }
  }
}

/** The number before `label` in the tracker's stop line. */
function counted(output: string, label: string): number {
  const m = output.match(new RegExp(`(\\d+) ${label}`));
  assert.ok(m, `"${label}" in: ${output}`);
  return Number(m[1]);
}

Deno.test("tracker process: a flood of forged, malformed and new-swarm announces — it answers its peers, keeps its caps and bounded memory", async () => {
  // (no per-source rate or per-address cap: the flood comes from one address, and the table's
  // own caps are what is under test)
  const tracker = await startTracker(["--source-rate", "0", "--peers-per-address", "0"]);
  const flood = new Flooder(tracker.port);
  const peerA = new TrackerClient(tracker.port);
  const peerB = new TrackerClient(tracker.port);
  const random = seededRandom(1607);
  const { maxSwarms, maxPeersPerSwarm } = DEFAULT_SWARM_LIMITS;
  const known = new Uint8Array(20).fill(0x3c);
  try {
    const before = await peerA.announce({ infoHash: known, port: 51001 });
    assert.ok(before?.action === "announce", JSON.stringify(before));

    const id = await flood.connect();
    await flood.unanswered(junk(20_000, random, id));
    // announces for new swarms until the table is full, then memory is measured
    let tid = 1;
    const newSwarm = () => {
      const hash = Uint8Array.from({ length: 20 }, () => (random() * 256) | 0);
      return announce(id, hash, 1 + (tid % 60_000), tid++);
    };
    const newSwarms = function* (n: number) {
      for (let i = 0; i < n; i++) yield newSwarm();
    };
    const crowded = new Uint8Array(20).fill(0xc7);
    const crowd = function* (ports: number) {
      for (let i = 0; i < ports; i++) yield announce(id, crowded, 1 + (tid % 60_000), tid++);
    };
    // one swarm from as many ports as it lists, and new swarms until the table is full
    await flood.pipelined(crowd(maxPeersPerSwarm));
    await flood.pipelined(newSwarms(maxSwarms + 2_000));
    const full = await residentBytes(tracker.pid);
    // then four times as many new swarms, and that swarm from twice as many new ports again
    await flood.pipelined(newSwarms(4 * maxSwarms));
    await flood.pipelined(crowd(2 * maxPeersPerSwarm));
    const after = await residentBytes(tracker.pid);

    // it still answers, and its peers still meet
    const b = await peerB.announce({ infoHash: known, port: 51002 });
    assert.ok(b?.action === "announce", JSON.stringify(b));
    assert.equal(b.peers.length, 1, "peer A is listed to peer B");
    const refused = flood.replies.get("tracker full: too many swarms") ?? 0;
    assert.ok(refused >= 4 * maxSwarms, `refused as full: ${JSON.stringify([...flood.replies])}`);
    // a table that grew with the flood would hold 40 000 more swarms and 10 000 more peers
    // (by hand without the caps: +42 MiB resident; with them +5 MiB)
    assert.ok(
      after - full < 16 * 2 ** 20,
      `resident memory ${(full / 2 ** 20).toFixed(1)} → ${(after / 2 ** 20).toFixed(1)} MiB`,
    );
  } finally {
    flood.close();
    peerA.close();
    peerB.close();
    const status = await tracker.stop("SIGTERM");
    assert.equal(status.code, 0, tracker.output());
  }
  const out = tracker.output();
  assert.ok(counted(out, "datagrams dropped") >= 15_000, out); // (the kernel may drop some)
  assert.ok(counted(out, "oversized") >= 3_000, out);
  assert.ok(counted(out, "bad connection id") >= 3_000, out);
  assert.ok(counted(out, "swarms") <= maxSwarms, out);
  // (a peer of a swarm beyond its cap is answered but not kept)
  assert.ok(counted(out, "peers") <= maxSwarms + maxPeersPerSwarm + 2, out);
});
