/**
 * Fuzzing a running server: 100 000 seeded random and mutated datagrams, then a real fetch of
 * a file's metadata and bytes still works and the heap has not grown without bound.
 */

import assert from "node:assert/strict";
import { encode, fileIdOf, NO_TOKEN, type Packet } from "../lib/wire/packet.ts";
import { sha256 } from "../lib/io/file_digest.ts";
import { PacketInbox, seededBytes, serveInProcess, tempDir } from "./harness.ts";
import { mulberry32 } from "./relay.ts";

const TOTAL = 100_000;
const SYNC_EVERY = 250;

Deno.test("fuzz: 100 000 random and mutated datagrams leave the server serving", async () => {
  const dir = await tempDir();
  const data = seededBytes(100_000, 21);
  await Deno.writeFile(`${dir.path}/f.bin`, data);
  const server = await serveInProcess(dir.path);
  // only answers to our own sync requests are kept (mutated ids stay below 0xfff00000)
  const client = new PacketInbox((p) => p.requestId >= 0xfff00000);
  const sock = client.sock;
  const inbox = client.packets;
  const port = server.port;
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port };
  let syncId = 0xfff00000;
  /** A real request; its answer proves the server handled everything sent before it. */
  let token = NO_TOKEN;
  const ask = async (p: Packet): Promise<Packet | undefined> => {
    // the flood may overflow the server's socket buffer: resend until answered, up to 5 s
    const deadline = Date.now() + 5000;
    let resendAt = 0;
    while (Date.now() < deadline) {
      if (Date.now() >= resendAt) {
        await sock.send(encode("token" in p && p.type !== "retry" ? { ...p, token } : p), to);
        resendAt = Date.now() + 200;
      }
      const got = inbox.find((x) => x.requestId === p.requestId);
      if (got?.type === "retry") {
        token = got.token.slice(); // address validation: resend with the token
        inbox.splice(inbox.indexOf(got), 1);
        resendAt = 0;
        continue;
      }
      if (got) return got;
      await client.next(100);
    }
    return undefined;
  };
  try {
    const first = await ask({
      type: "meta_request",
      requestId: syncId++,
      token: NO_TOKEN,
      name: "f.bin",
    });
    assert.equal(first?.type, "meta_reply");
    const fileId = fileIdOf(first?.type === "meta_reply" ? first.digest : new Uint8Array(8));
    // seeds carry the valid token, so mutations reach the request handlers, not only RETRY
    const seeds: Uint8Array[] = [
      encode({ type: "meta_request", requestId: 1, token, name: "f.bin" }),
      encode({
        type: "chunk_request",
        requestId: 2,
        token,
        fileId,
        offset: 0,
        length: 100,
        blockSize: 50,
        name: "f.bin",
      }),
      encode({
        type: "hashes_request",
        requestId: 3,
        token,
        fileId,
        firstPiece: 0,
        count: 2,
        name: "../f.bin",
      }),
    ];
    const random = mulberry32(2026);
    const heapBefore = Deno.memoryUsage().heapUsed;
    for (let i = 0; i < TOTAL; i++) {
      let d: Uint8Array;
      if (i % 2 === 0) {
        d = seededBytes(Math.floor(random() * 200), i); // pure noise
      } else {
        d = seeds[i % seeds.length].slice(); // a valid request with a few bytes mutated
        const flips = 1 + Math.floor(random() * 4);
        for (let f = 0; f < flips; f++) d[Math.floor(random() * d.length)] = random() * 256;
        if (random() < 0.2) d = d.subarray(0, Math.floor(random() * d.length));
      }
      await sock.send(d, to);
      if (i % SYNC_EVERY === SYNC_EVERY - 1) {
        const r = await ask({
          type: "meta_request",
          requestId: syncId++,
          token: NO_TOKEN,
          name: "f.bin",
        });
        assert.equal(r?.type, "meta_reply", `after ${i + 1} datagrams: ${JSON.stringify(r)}`);
        inbox.length = 0;
      }
    }
    // still serves the right bytes
    const chunk = await ask({
      type: "chunk_request",
      requestId: syncId++,
      token: NO_TOKEN,
      fileId,
      offset: 0,
      length: 1000,
      blockSize: 1000,
      name: "f.bin",
    });
    assert.equal(chunk?.type, "chunk_reply");
    if (chunk?.type === "chunk_reply") {
      assert.deepEqual(sha256(chunk.data), sha256(data.subarray(0, 1000)));
    }
    const grown = Deno.memoryUsage().heapUsed - heapBefore;
    assert.ok(grown < 64 << 20, `heap grew by ${grown} bytes`);
    const stats = await server.stop();
    assert.ok(stats.datagrams > TOTAL / 2, `server saw ${stats.datagrams} datagrams`);
    assert.ok(stats.malformed > TOTAL / 4, `malformed counted: ${stats.malformed}`);
  } finally {
    await server.stop();
    await client.close();
    await dir.cleanup();
  }
});
