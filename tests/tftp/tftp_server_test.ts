/**
 * The TFTP server (in-process, `startTftp`) against a raw UDP client: confinement, refusals,
 * the amplification caps, limits, duplicate requests, foreign TIDs, and a fuzz run. Counted in
 * bytes and datagrams; synchronised on datagrams and on the server's transfer-end events.
 */

import assert from "node:assert/strict";
import { startTftp, type TftpStats, type TftpTransferEnd } from "../../tftp_server.ts";
import {
  decode,
  encodeAck,
  encodeRequest,
  type TftpOption,
  type TftpPacket,
} from "../../lib/tftp/tftp_packet.ts";
import {
  MAX_TFTP_TRANSFERS_PER_CLIENT,
  MAX_UNPROVEN_PER_CLIENT,
} from "../../lib/tftp/tftp_limits.ts";
import { UNPROVEN_SENDS } from "../../lib/tftp/tftp_transfer.ts";
import { runUdpget, sameBytes, seededBytes, tempDir } from "../harness.ts";
import { mulberry32 } from "../relay.ts";
import { withTimeout } from "../../lib/io/timer.ts";

/** A datagram received by a raw client. */
interface Got {
  bytes: Uint8Array;
  packet?: TftpPacket;
  from: Deno.NetAddr;
}

/** A raw UDP client socket that keeps what it receives. */
class RawClient {
  readonly sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  readonly inbox: Got[] = [];
  #wake: (() => void) | undefined;
  #loop: Promise<void>;

  constructor() {
    this.#loop = (async () => {
      try {
        for await (const [data, from] of this.sock) {
          const r = decode(data);
          this.inbox.push({
            bytes: data,
            packet: r.ok ? r.packet : undefined,
            from: from as Deno.NetAddr,
          });
          this.#wake?.();
        }
      } catch { /* closed */ }
    })();
  }

  get port(): number {
    return (this.sock.addr as Deno.NetAddr).port;
  }

  send(bytes: Uint8Array, port: number): Promise<number> {
    return this.sock.send(bytes, { transport: "udp", hostname: "127.0.0.1", port });
  }

  /** The next datagram (removed from the inbox), or undefined after `ms` of silence. */
  async next(ms = 3000): Promise<Got | undefined> {
    if (this.inbox.length === 0) {
      await withTimeout(new Promise<void>((r) => this.#wake = r), ms);
      this.#wake = undefined;
    }
    return this.inbox.shift();
  }

  /** Lock-step fetch of `name` (ACKs every DATA from the TID of the first reply). */
  async fetch(
    port: number,
    name: string,
    options: TftpOption[] = [],
  ): Promise<Uint8Array | TftpPacket> {
    await this.send(encodeRequest("rrq", name, "octet", options), port);
    const parts: Uint8Array[] = [];
    let blksize = 512;
    for (;;) {
      const g = await this.next();
      if (!g?.packet) throw new Error(`no answer for ${name}`);
      const p = g.packet;
      if (p.op === "error") return p;
      if (p.op === "oack") {
        blksize = Number(p.options.find((o) => o.name === "blksize")?.value ?? 512);
        await this.send(encodeAck(0), g.from.port);
        continue;
      }
      if (p.op !== "data") throw new Error(`unexpected ${p.op}`);
      parts.push(p.data.slice());
      await this.send(encodeAck(p.block), g.from.port);
      if (p.data.length < blksize) break;
    }
    const out = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of parts) {
      out.set(x, at);
      at += x.length;
    }
    return out;
  }

  async close(): Promise<void> {
    this.sock.close();
    await this.#loop;
  }
}

interface Running {
  port: number;
  root: string;
  outside: string;
  stats: TftpStats;
  /** Resolves at the next transfer end the server reports. */
  ended(): Promise<TftpTransferEnd>;
  /** Resolves once no request is open (every admitted one has ended). */
  settled(): Promise<void>;
  ends: TftpTransferEnd[];
}

/** A TFTP server on a temp root (with a sibling dir "outside"), stopped afterwards. */
async function withTftp(body: (s: Running) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const root = `${dir.path}/root`;
  const outside = `${dir.path}/outside`;
  await Deno.mkdir(root);
  await Deno.mkdir(outside);
  const abort = new AbortController();
  const ends: TftpTransferEnd[] = [];
  let waiters: ((e: TftpTransferEnd) => void)[] = [];
  const server = await startTftp({
    port: 0,
    host: "127.0.0.1",
    root,
    log: () => {},
    signal: abort.signal,
    onTransferEnd: (e) => {
      ends.push(e);
      const ws = waiters;
      waiters = [];
      for (const w of ws) w(e);
    },
  });
  const ended = () => new Promise<TftpTransferEnd>((r) => waiters.push(r));
  const settled = async () => {
    while (server.stats.active > 0) await ended();
  };
  try {
    await body({
      port: server.addr.port,
      root,
      outside,
      stats: server.stats,
      ends,
      ended,
      settled,
    });
  } finally {
    abort.abort();
    await server.done;
    await dir.cleanup();
  }
}

async function withClient(body: (c: RawClient) => Promise<void>): Promise<void> {
  const c = new RawClient();
  try {
    await body(c);
  } finally {
    await c.close();
  }
}

Deno.test("tftp server: names outside the root, directories, FIFOs and devices get an ERROR, never a byte", async () => {
  await withTftp(async (s) => {
    await Deno.writeTextFile(`${s.outside}/secret.txt`, "secret");
    await Deno.writeTextFile(`${s.root}/ok.txt`, "fine");
    await Deno.mkdir(`${s.root}/sub`);
    await Deno.symlink(`${s.outside}/secret.txt`, `${s.root}/link_out`);
    await Deno.symlink(s.outside, `${s.root}/dir_link_out`);
    await Deno.symlink("/dev/zero", `${s.root}/zero_link`);
    const fifo = await new Deno.Command("mkfifo", { args: [`${s.root}/fifo`] }).output();
    assert.equal(fifo.code, 0);
    const names = [
      "../outside/secret.txt",
      "sub/../../outside/secret.txt",
      "..",
      `${s.outside}/secret.txt`,
      "/etc/passwd",
      "link_out",
      "dir_link_out/secret.txt",
      "zero_link",
      "/dev/zero",
      "fifo",
      "sub",
      "",
      "a\\..\\..\\outside",
      "%2e%2e/outside/secret.txt",
      "missing.txt",
    ];
    await withClient(async (c) => {
      for (const name of names) {
        const r = await c.fetch(s.port, name);
        assert.ok(!(r instanceof Uint8Array), `${JSON.stringify(name)} must not be served`);
        assert.equal(r.op, "error");
        if (r.op === "error") assert.ok(r.code === 1 || r.code === 2, `${name}: code ${r.code}`);
        assert.equal(await c.next(100), undefined, `${name}: nothing more`);
      }
      assert.deepEqual(await c.fetch(s.port, "ok.txt"), new TextEncoder().encode("fine"));
    });
    assert.equal(s.stats.transfers, 1, "only the good name opened a transfer");
  });
});

Deno.test("tftp server: write requests get ERROR 2, bad modes ERROR 4, replies nothing", async () => {
  await withTftp(async (s) => {
    await Deno.writeTextFile(`${s.root}/f`, "x");
    await withClient(async (c) => {
      await c.send(encodeRequest("wrq", "f", "octet"), s.port);
      const w = await c.next();
      assert.deepEqual(w?.packet, { op: "error", code: 2, message: "read-only server" });
      assert.equal(w?.from.port, s.port, "refusals come from the listening port");
      await c.send(encodeRequest("rrq", "f", "mail"), s.port);
      assert.deepEqual((await c.next())?.packet, {
        op: "error",
        code: 4,
        message: "unsupported mode",
      });
      // replies sent to the listening port are never answered (no error ping-pong)
      for (const junk of [encodeAck(1), new Uint8Array([0, 5, 0, 1, 0]), new Uint8Array([0, 6])]) {
        await c.send(junk, s.port);
      }
      await c.send(new Uint8Array([0, 1, 0x61]), s.port); // an unterminated RRQ: short error
      const e = await c.next();
      assert.equal(e?.packet?.op, "error");
      assert.ok(e!.bytes.length <= 3 * 3, "no more than 3x the request");
      assert.equal(await c.next(200), undefined);
    });
    assert.equal(s.stats.transfers, 0);
  });
});

Deno.test("tftp server: an unproven address gets the first DATA at most UNPROVEN_SENDS times, then nothing", async () => {
  await withTftp(async (s) => {
    await Deno.writeFile(`${s.root}/big.bin`, seededBytes(100_000, 1));
    await withClient(async (c) => {
      const ended = s.ended();
      const rrq = encodeRequest("rrq", "big.bin", "octet", [{ name: "timeout", value: "1" }]);
      await c.send(rrq, s.port);
      await c.send(rrq, s.port); // the client repeats its request: counts against the same cap
      const end = await ended; // the server gives up after its timeouts
      assert.deepEqual({ ok: end.ok, proven: end.proven }, { ok: false, proven: false });
      let bytes = 0;
      let datagrams = 0;
      for (const g of c.inbox.splice(0)) {
        bytes += g.bytes.length;
        datagrams++;
      }
      assert.ok(datagrams <= UNPROVEN_SENDS, `${datagrams} datagrams`);
      assert.ok(bytes <= UNPROVEN_SENDS * 516, `${bytes} bytes`);
    });
  });
});

Deno.test("tftp server: unproven transfers per IP are capped; requests beyond get no answer", async () => {
  await withTftp(async (s) => {
    await Deno.writeFile(`${s.root}/big.bin`, seededBytes(100_000, 2));
    const clients = Array.from({ length: MAX_UNPROVEN_PER_CLIENT + 4 }, () => new RawClient());
    try {
      for (const c of clients) await c.send(encodeRequest("rrq", "big.bin", "octet"), s.port);
      // each admitted one sends DATA 1 at once; wait for those, then the others stay silent
      let answered = 0;
      for (const c of clients) if (await c.next(500)) answered++;
      assert.equal(answered, MAX_UNPROVEN_PER_CLIENT);
      assert.equal(s.stats.refused, 4);
      await s.settled(); // they expire: no ACK ever came
      assert.ok(s.ends.every((e) => !e.ok && !e.proven));
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

Deno.test("tftp server: a repeated request is answered from the same TID, not a second transfer", async () => {
  await withTftp(async (s) => {
    const file = seededBytes(2000, 3);
    await Deno.writeFile(`${s.root}/f.bin`, file);
    await withClient(async (c) => {
      const rrq = encodeRequest("rrq", "f.bin", "octet");
      await c.send(rrq, s.port);
      const first = await c.next();
      await c.send(rrq, s.port);
      const again = await c.next();
      assert.equal(first?.packet?.op, "data");
      assert.deepEqual(again?.bytes, first?.bytes);
      assert.equal(again?.from.port, first?.from.port, "same TID");
      assert.equal(s.stats.transfers, 1);
      // an ACK proves the address; later duplicates of the request are ignored
      await c.send(encodeAck(1), first!.from.port);
      assert.equal((await c.next())?.packet?.op, "data");
      await c.send(rrq, s.port);
      assert.equal(await c.next(200), undefined);
    });
  });
});

Deno.test("tftp server: datagrams from a foreign TID are dropped without disturbing the transfer", async () => {
  await withTftp(async (s) => {
    const file = seededBytes(5000, 4);
    await Deno.writeFile(`${s.root}/f.bin`, file);
    await withClient(async (c) => {
      await withClient(async (intruder) => {
        await c.send(encodeRequest("rrq", "f.bin", "octet"), s.port);
        const d1 = await c.next();
        const tid = d1!.from.port;
        await intruder.send(encodeAck(1), tid);
        await intruder.send(new Uint8Array([0, 5, 0, 0, 0]), tid);
        assert.equal(await intruder.next(200), undefined, "no answer to the intruder");
        assert.equal(await c.next(100), undefined, "its ACK did not advance our transfer");
        // the real client carries on
        const parts = [d1!.packet!.op === "data" ? d1!.packet!.data.slice() : new Uint8Array()];
        let block = 1;
        for (;;) {
          await c.send(encodeAck(block), tid);
          const g = await c.next();
          if (g?.packet?.op !== "data") throw new Error("expected DATA");
          parts.push(g.packet.data.slice());
          block = g.packet.block;
          if (g.packet.data.length < 512) break;
        }
        await c.send(encodeAck(block), tid);
        const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let at = 0;
        for (const p of parts) {
          all.set(p, at);
          at += p.length;
        }
        assert.ok(sameBytes(all, file));
        assert.ok(s.stats.foreignTid >= 2);
      });
    });
  });
});

Deno.test("tftp server: per-client transfer limit, answered with an error", async () => {
  await withTftp(async (s) => {
    await Deno.writeFile(`${s.root}/big.bin`, seededBytes(100_000, 5));
    const clients = Array.from(
      { length: MAX_TFTP_TRANSFERS_PER_CLIENT + 1 },
      () => new RawClient(),
    );
    try {
      for (const c of clients.slice(0, -1)) {
        await c.send(encodeRequest("rrq", "big.bin", "octet"), s.port);
        const d = await c.next();
        await c.send(encodeAck(1), d!.from.port); // proven, and left waiting
        assert.equal((await c.next())?.packet?.op, "data");
      }
      const last = clients.at(-1)!;
      await last.send(encodeRequest("rrq", "big.bin", "octet"), s.port);
      const r = await last.next();
      assert.equal(r?.packet?.op, "error");
      assert.match(r?.packet?.op === "error" ? r.packet.message : "", /too many transfers/);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

Deno.test("tftp server fuzz: 20 000 random and mutated datagrams, then it still serves", async () => {
  await withTftp(async (s) => {
    const file = seededBytes(3000, 6);
    await Deno.writeFile(`${s.root}/f.bin`, file);
    const random = mulberry32(77);
    const seeds = [
      encodeRequest("rrq", "f.bin", "octet", [
        { name: "blksize", value: "1428" },
        { name: "tsize", value: "0" },
        { name: "windowsize", value: "8" },
        { name: "timeout", value: "1" },
      ]),
      encodeRequest("rrq", "", "netascii"),
      encodeRequest("wrq", "f.bin", "octet"),
      encodeRequest(
        "rrq",
        "f.bin",
        "octet",
        Array.from({ length: 200 }, (_, i) => ({ name: `x${i}`, value: "1" })),
      ),
      encodeAck(1),
    ];
    await withClient(async (c) => {
      for (let i = 0; i < 20_000; i++) {
        let b: Uint8Array;
        if (random() < 0.3) {
          b = new Uint8Array(Math.floor(random() * 600));
          for (let j = 0; j < b.length; j++) b[j] = random() * 256;
        } else {
          const seed = seeds[Math.floor(random() * seeds.length)];
          b = seed.slice(0, seed.length - Math.floor(random() * 8));
          const flips = Math.floor(random() * 4);
          for (let f = 0; f < flips && b.length > 0; f++) {
            b[Math.floor(random() * b.length)] = random() * 256;
          }
        }
        await c.send(b, s.port);
        if (i % 500 === 0) await c.next(1); // let the server run
      }
    });
    // the flood opened transfers nobody ACKs; once they expired, a client gets the file
    await s.settled();
    await withClient(async (c) => {
      const got = await c.fetch(s.port, "f.bin", [{ name: "blksize", value: "1000" }]);
      assert.ok(got instanceof Uint8Array && sameBytes(got, file));
    });
    assert.ok(s.stats.malformed > 0);
  });
});

Deno.test("udpget serve --tftp on a port in use: exit 6 with one line, nothing left running", async () => {
  const dir = await tempDir();
  const taken = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const r = await runUdpget(
      ["serve", "0", "--host", "127.0.0.1", "--root", dir.path, "--tftp", String(port)],
      dir.path,
    );
    assert.equal(r.code, 6, r.stderr);
    assert.match(r.stderr, /^udpget: cannot listen for TFTP on 127\.0\.0\.1:\d+: .*\n$/);
  } finally {
    taken.close();
    await dir.cleanup();
  }
});
