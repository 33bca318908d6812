/**
 * What `serve` logs and how it starts: refusal lines (rate-limited per class), transfer start
 * and end lines, BUSY answers carrying hashing progress, and the background pass that hashes
 * the root at start. The server runs in-process (`serve()`), the client is a raw UDP socket.
 */

import assert from "node:assert/strict";
import { encode, fileIdOf, NO_TOKEN, type Packet } from "../lib/wire/packet.ts";
import { PacketInbox, seededBytes, serveInProcess, tempDir } from "./harness.ts";
import { digestFile, type DigestFn } from "../lib/io/file_digest.ts";
import { parseBusyProgress } from "../lib/wire/busy_progress.ts";
import type { LogEvent } from "../lib/serving/log_event.ts";
import type { ServeOptions } from "../server.ts";
import type { PrehashSummary } from "../lib/serving/file_table.ts";
import { seal } from "../lib/wire/auth.ts";

interface Client {
  /** Sends `p` (with the token once the server handed one out); the first reply. */
  ask(p: Packet): Promise<Packet>;
  /** Sends raw bytes and waits for one reply, or resolves undefined after `ms`. */
  raw(bytes: Uint8Array, ms?: number): Promise<Packet | undefined>;
  /** Goes on from a new socket (a new source port), as a new fetch does. */
  newSocket(): Promise<void>;
}

/** A server over a temp root with `files`, a client, and every event the server logged. */
async function withServer(
  files: Record<string, Uint8Array>,
  over: Partial<ServeOptions>,
  body: (c: Client, events: LogEvent[], stop: () => Promise<void>) => Promise<void>,
): Promise<LogEvent[]> {
  const dir = await tempDir();
  const events: LogEvent[] = [];
  for (const [name, data] of Object.entries(files)) {
    await Deno.writeFile(`${dir.path}/${name}`, data);
  }
  const server = await serveInProcess(dir.path, { log: (e) => events.push(e), ...over });
  let inbox = new PacketInbox();
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: server.port };
  let token = NO_TOKEN;
  const raw = async (bytes: Uint8Array, ms = 2000) => {
    inbox.packets.length = 0;
    await inbox.sock.send(bytes, to);
    if (inbox.packets.length === 0) await inbox.next(ms);
    return inbox.packets.shift();
  };
  const ask = async (p: Packet): Promise<Packet> => {
    const withToken = () => ({ ...p, token } as Packet);
    let r = await raw(encode(withToken()));
    if (r?.type === "retry") {
      token = r.token.slice();
      r = await raw(encode(withToken()));
    }
    assert.ok(r, `an answer to ${p.type}`);
    return r;
  };
  try {
    const newSocket = async () => {
      await inbox.close();
      inbox = new PacketInbox();
    };
    await body({ ask, raw, newSocket }, events, async () => void await server.stop());
  } finally {
    await server.stop();
    await inbox.close();
    await dir.cleanup();
  }
  return events;
}

/** A metadata request with a fresh id, as clients send (a server ignores copies: §6.1). */
let metaId = 1;
const meta = (name: string): Packet => ({
  type: "meta_request",
  requestId: metaId++,
  token: NO_TOKEN,
  name,
});

Deno.test("serve: while a file is being hashed, BUSY says how far it got", async () => {
  let release!: () => void;
  const hold = new Promise<void>((r) => release = r);
  let started!: () => void;
  const hashing = new Promise<void>((r) => started = r);
  const slow: DigestFn = async (file, size, pieceSize, onProgress) => {
    onProgress?.(65_536);
    started();
    await hold;
    return digestFile(file, size, pieceSize, onProgress);
  };
  const data = seededBytes(300_000, 1);
  try {
    await withServer({ "big.bin": data }, { digestFn: slow, prehash: false }, async (c, events) => {
      const first = await c.ask(meta("big.bin"));
      assert.equal(first.type, "error");
      await hashing;
      const busy = await c.ask(meta("big.bin"));
      assert.ok(busy.type === "error" && busy.code === 6, JSON.stringify(busy));
      assert.equal(busy.message, "hashing 65536/300000");
      assert.deepEqual(parseBusyProgress(busy.message), { done: 65_536, total: 300_000 });
      release();
      // once hashed: the answer, never BUSY again
      let r = await c.ask(meta("big.bin"));
      while (r.type === "error" && r.code === 6) r = await c.ask(meta("big.bin"));
      assert.equal(r.type, "meta_reply");
      assert.ok(events.some((e) => e.event === "hashing" && e.fields?.name === "big.bin"));
      assert.ok(events.some((e) => e.event === "hashed" && e.fields?.name === "big.bin"));
      const refusals = events.filter((e) => e.event === "refused" && e.fields?.class === "busy");
      assert.ok(refusals.length >= 1);
    });
  } finally {
    release();
  }
});

Deno.test("serve: files are hashed in the background from the start", async () => {
  let prehashed!: (s: PrehashSummary) => void;
  const done = new Promise<PrehashSummary>((r) => prehashed = r);
  let calls = 0;
  const counting: DigestFn = (file, size, pieceSize, onProgress) => {
    calls++;
    return digestFile(file, size, pieceSize, onProgress);
  };
  const files = { "a.bin": seededBytes(400_000, 2), "b.bin": seededBytes(1000, 3) };
  await withServer(files, { digestFn: counting, onPrehashed: prehashed }, async (c, events) => {
    const s = await done;
    assert.equal(s.hashed, 2);
    assert.equal(calls, 2);
    const r = await c.ask(meta("a.bin"));
    assert.equal(r.type, "meta_reply", "answered at once, no BUSY");
    assert.equal(calls, 2, "not hashed again");
    const lines = events.map((e) => e.event);
    assert.deepEqual(lines.slice(0, 1), ["prehash_start"]);
    assert.ok(lines.includes("prehash_done"));
  });
});

Deno.test("serve: refused requests are logged, a few per class, then summarised", async () => {
  const limits = { burst: 2, intervalMs: 60_000, maxAddresses: 16 };
  const events = await withServer({ "ok.txt": new Uint8Array(10) }, {
    refusalLimits: limits,
  }, async (c, events) => {
    for (let i = 0; i < 5; i++) {
      const r = await c.ask(meta(`missing-${i}`));
      assert.ok(r.type === "error" && r.code === 1);
    }
    const denied = await c.ask(meta("../etc/passwd"));
    assert.ok(denied.type === "error" && denied.code === 2);
    // a request with a readable header and a bad version: BAD_VERSION, class "malformed"
    const bad = encode(meta("ok.txt"));
    bad[2] = 9; // the version byte
    const r = await c.raw(bad);
    assert.ok(r?.type === "error" && r.code === 7, JSON.stringify(r));
    const refused = events.filter((e) => e.event === "refused");
    assert.deepEqual(refused.map((e) => e.fields?.class), [
      "not_found",
      "not_found",
      "access_denied",
      "malformed",
    ]);
    assert.match(
      refused[0].msg,
      /^refused META "missing-0" from 127\.0\.0\.1:\d+: NOT_FOUND "no such file"$/,
    );
    assert.equal(refused[2].fields?.name, "../etc/passwd");
  });
  const summary = events.filter((e) => e.event === "refusals_suppressed");
  assert.equal(summary.length, 1, "summarised at shutdown");
  assert.equal(
    summary[0].msg,
    "3 more not_found refusals from 1 address suppressed in the last 1 s",
  );
});

Deno.test("serve: AUTH_FAILED refusals are logged", async () => {
  const key = crypto.getRandomValues(new Uint8Array(32));
  await withServer({ "f": new Uint8Array(10) }, { key }, async (c, events) => {
    const wrong = seal(encode(meta("f")), new Uint8Array(32), Date.now(), new Uint8Array(8));
    const r = await c.raw(wrong);
    assert.ok(r?.type === "error" && r.code === 9, JSON.stringify(r));
    const refused = events.filter((e) => e.event === "refused");
    assert.equal(refused.length, 1);
    assert.equal(refused[0].fields?.class, "auth_failed");
    assert.equal(refused[0].fields?.code, "AUTH_FAILED");
  });
});

Deno.test("serve: a line when a transfer starts and one when it ends, with a transfer id", async () => {
  const data = seededBytes(100_000, 4);
  const events = await withServer({ "f.bin": data }, {}, async (c, events) => {
    for (let fetch = 0; fetch < 2; fetch++) {
      if (fetch > 0) await c.newSocket();
      const m = await c.ask(meta("f.bin"));
      assert.equal(m.type, "meta_reply");
      if (m.type !== "meta_reply") return;
      const r = await c.ask({
        type: "chunk_request",
        requestId: 2,
        token: NO_TOKEN,
        fileId: fileIdOf(m.digest),
        offset: 0,
        length: 1000,
        blockSize: 1000,
        name: "f.bin",
      });
      assert.equal(r.type, "chunk_reply");
    }
    const starts = events.filter((e) => e.event === "transfer_start");
    assert.deepEqual(starts.map((e) => e.fields?.transfer), [1, 2], "two fetches, two transfers");
    assert.match(
      starts[0].msg,
      /^transfer 1 start: "f\.bin" \(100000 bytes\) to 127\.0\.0\.1:\d+$/,
    );
  });
  const ends = events.filter((e) => e.event === "transfer_end");
  assert.equal(ends.length, 2, "ended at shutdown");
  assert.equal(ends[0].fields?.bytes, 1000);
  assert.match(
    ends[0].msg,
    /^transfer 1 end: "f\.bin" to 127\.0\.0\.1 \(1 port\): 1000 bytes in 1 requests over/,
  );
});

Deno.test("serve: a transfer longer than the once-a-second sweep stays one transfer", async () => {
  const data = seededBytes(100_000, 5);
  const events = await withServer({ "f.bin": data }, {}, async (c, events) => {
    const m = await c.ask(meta("f.bin"));
    assert.ok(m.type === "meta_reply");
    for (let k = 0; k < 2; k++) {
      if (k > 0) await new Promise((r) => setTimeout(r, 1300)); // past a sweep, within 2 s idle
      const r = await c.ask({
        type: "chunk_request",
        requestId: 10 + k,
        token: NO_TOKEN,
        fileId: fileIdOf(m.digest),
        offset: 1000 * k,
        length: 1000,
        blockSize: 1000,
        name: "f.bin",
      });
      assert.equal(r.type, "chunk_reply");
    }
    assert.equal(events.filter((e) => e.event === "transfer_start").length, 1);
    assert.equal(events.filter((e) => e.event === "transfer_end").length, 0, "not ended while on");
  });
  const ends = events.filter((e) => e.event === "transfer_end");
  assert.equal(ends.length, 1);
  assert.equal(ends[0].fields?.bytes, 2000);
});
