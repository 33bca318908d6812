/**
 * The server against hostile and malformed input: path confinement, garbage datagrams,
 * range checks. The server runs in-process (`serve()`), the client is a raw UDP socket.
 */

import assert from "node:assert/strict";
import type { ServeStats } from "../server.ts";
import {
  type ChunkRequest,
  decode,
  encode,
  ErrorCode,
  fileIdOf,
  NO_TOKEN,
  type Packet,
} from "../lib/wire/packet.ts";
import { PacketInbox, seededBytes, serveInProcess, tempDir } from "./harness.ts";
import { sha256 } from "../lib/io/file_digest.ts";
import { withTimeout } from "../lib/io/timer.ts";
import { parseGivenOut } from "../lib/wire/given_out.ts";

interface Running {
  port: number;
  root: string;
  outside: string;
  ask(p: Packet | Uint8Array, expect?: number): Promise<Packet[]>;
  /** The address-validation token the server handed out (all-zero before). */
  token(): Uint8Array;
  sock: Deno.DatagramConn;
  stop(): Promise<ServeStats>;
}

/** A server on a temp root (with a sibling dir "outside" it) and a raw client socket. */
async function withServer(body: (s: Running) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const root = `${dir.path}/root`;
  const outside = `${dir.path}/outside`;
  await Deno.mkdir(root);
  await Deno.mkdir(outside);
  const server = await serveInProcess(root);
  const client = new PacketInbox();
  const sock = client.sock;
  const inbox = client.packets;
  const p = server.port;
  /** Sends `pk` and collects replies until `expect` arrived or 1 s of silence. */
  const exchange = async (bytes: Uint8Array, expect: number): Promise<Packet[]> => {
    inbox.length = 0;
    await sock.send(bytes, { transport: "udp", hostname: "127.0.0.1", port: p });
    while (inbox.length < expect) {
      const got = await client.next(1000);
      if (got === undefined && inbox.length < expect) break;
    }
    return inbox.splice(0);
  };
  /** Sends a request (with the address-validation token once the server handed one out). */
  let token = NO_TOKEN;
  const ask = async (pk: Packet | Uint8Array, expect = 1): Promise<Packet[]> => {
    if (pk instanceof Uint8Array) return exchange(pk, expect);
    const withToken = (q: Packet) => "token" in q && q.type !== "retry" ? { ...q, token } : q;
    let replies = await exchange(encode(withToken(pk)), expect);
    const retry = replies.find((r) => r.type === "retry");
    if (retry?.type === "retry") {
      token = retry.token.slice();
      replies = await exchange(encode(withToken(pk)), expect);
    }
    return replies;
  };
  try {
    await body({
      port: p,
      root,
      outside,
      ask,
      token: () => token,
      sock,
      stop: () => server.stop(),
    });
  } finally {
    await server.stop();
    await client.close();
    await dir.cleanup();
  }
}

/** A metadata request with a fresh id (a server ignores a copy of one it answered: §6.1). */
let metaId = 7;
function meta(name: string): Packet {
  return { type: "meta_request", requestId: metaId++, token: NO_TOKEN, name };
}

function errorCodeOf(replies: Packet[]): number | undefined {
  assert.equal(replies.length, 1, "exactly one reply");
  const r = replies[0];
  return r.type === "error" ? r.code : undefined;
}

Deno.test("server: answers metadata with the real size and digest", async () => {
  await withServer(async (s) => {
    const data = seededBytes(200_000, 1);
    await Deno.writeFile(`${s.root}/a.bin`, data);
    const [r] = await s.ask(meta("a.bin"));
    assert.equal(r.type, "meta_reply");
    if (r.type !== "meta_reply") return;
    assert.equal(r.requestId, 7);
    assert.equal(r.size, data.length);
    assert.deepEqual(r.digest, sha256(data));
  });
});

Deno.test("server: path traversal and non-regular files get an error packet", async () => {
  await withServer(async (s) => {
    await Deno.writeTextFile(`${s.outside}/secret.txt`, "secret");
    await Deno.writeTextFile(`${s.root}/ok.txt`, "ok");
    await Deno.symlink(`${s.outside}/secret.txt`, `${s.root}/link_out`);
    await Deno.symlink(s.outside, `${s.root}/dir_link_out`);
    await Deno.mkdir(`${s.root}/sub`);
    const fifo = await new Deno.Command("mkfifo", { args: [`${s.root}/fifo`] }).output();
    assert.equal(fifo.code, 0);
    await Deno.symlink("/dev/zero", `${s.root}/zero_link`);
    // ".." in every position of a three-part path, alone and mixed with "." and empty parts
    const parts = ["sub", "x", "ok.txt"];
    const dotdots = parts.flatMap((_, i) => [
      [...parts.slice(0, i), "..", ...parts.slice(i)].join("/"),
      [...parts.slice(0, i), ".", "..", ...parts.slice(i + 1)].join("/"),
      [...parts.slice(0, i), "", "..", ...parts.slice(i + 1)].join("/"),
    ]);
    const attempts = [
      ...dotdots,
      "ok.txt/..",
      "sub/../ok.txt",
      "//etc/passwd",
      "..%2fok.txt",
      "%2e%2e%2foutside%2fsecret.txt",
      "ok.txt\0",
      "\0",
      "zero_link",
      "/dev/null",
      "sub/",
      "../outside/secret.txt",
      "sub/../../outside/secret.txt",
      "sub/..",
      "..",
      "/etc/passwd",
      `${s.outside}/secret.txt`,
      "ok.txt\0../../outside/secret.txt",
      "..\\outside\\secret.txt",
      "%2e%2e/outside/secret.txt",
      "link_out",
      "dir_link_out/secret.txt",
      "sub",
      ".",
      "fifo",
      "/dev/zero",
    ];
    for (const name of attempts) {
      const code = errorCodeOf(await s.ask(meta(name)));
      assert.ok(
        code === ErrorCode.AccessDenied || code === ErrorCode.NotFound,
        `${JSON.stringify(name)} answered with ${code}`,
      );
    }
    // a chunk request for an outside file is refused the same way
    const chunk = await s.ask({
      type: "chunk_request",
      requestId: 9,
      token: NO_TOKEN,
      fileId: 1n,
      offset: 0,
      length: 6,
      blockSize: 1000,
      name: "link_out",
    });
    assert.equal(errorCodeOf(chunk), ErrorCode.AccessDenied);
    // and the legitimate file next to them is served
    assert.equal((await s.ask(meta("ok.txt")))[0].type, "meta_reply");
  });
});

Deno.test("server: chunk requests are range- and identity-checked, answered in blocks", async () => {
  await withServer(async (s) => {
    const data = seededBytes(10_000, 2);
    await Deno.writeFile(`${s.root}/f.bin`, data);
    const [m] = await s.ask(meta("f.bin"));
    assert.equal(m.type, "meta_reply");
    const fileId = fileIdOf(m.type === "meta_reply" ? m.digest : new Uint8Array(8));
    const base = {
      type: "chunk_request" as const,
      requestId: 11,
      token: NO_TOKEN,
      fileId,
      blockSize: 3000,
      name: "f.bin",
    };
    const replies = await s.ask({ ...base, offset: 1000, length: 7000 }, 3);
    assert.deepEqual(replies.map((r) => r.type === "chunk_reply" ? r.offset : -1), [
      1000,
      4000,
      7000,
    ]);
    const joined = new Uint8Array(7000);
    for (const r of replies) {
      if (r.type === "chunk_reply") joined.set(r.data, r.offset - 1000);
    }
    assert.deepEqual(joined, data.subarray(1000, 8000));
    const past = await s.ask({ ...base, offset: 9000, length: 1001 });
    assert.equal(errorCodeOf(past), ErrorCode.OutOfRange);
    const stale = await s.ask({ ...base, fileId: fileId ^ 1n, offset: 0, length: 10 });
    assert.equal(errorCodeOf(stale), ErrorCode.Stale);
  });
});

Deno.test("server: a burst of garbage datagrams is dropped and counted, service goes on", async () => {
  await withServer(async (s) => {
    await Deno.writeTextFile(`${s.root}/ok.txt`, "still here");
    const target = { transport: "udp" as const, hostname: "127.0.0.1", port: s.port };
    const garbage = seededBytes(3000 * 64, 3);
    for (let i = 0; i < 3000; i++) {
      const len = i % 64;
      await s.sock.send(garbage.subarray(i * 64, i * 64 + len), target);
      // every 100 datagrams, a real request: its answer proves the server is still serving
      // and keeps the burst within the socket buffer, so every datagram is counted
      if (i % 100 === 99) assert.equal((await s.ask(meta("ok.txt")))[0]?.type, "meta_reply");
    }
    // a well-formed header with a truncated body, and a future version, get error packets
    const good = encode(meta("ok.txt"));
    assert.equal(errorCodeOf(await s.ask(good.subarray(0, good.length - 1))), ErrorCode.BadRequest);
    const v2 = good.slice();
    v2[2] = 2;
    assert.equal(errorCodeOf(await s.ask(v2)), ErrorCode.BadVersion);
    const after = await s.ask(meta("ok.txt"));
    assert.equal(after.at(-1)?.type, "meta_reply");
    const stats = await s.stop();
    assert.ok(stats.malformed >= 3000, `malformed counted: ${stats.malformed}`);
  });
});

Deno.test("server: before address validation it sends at most 3x what it received", async () => {
  await withServer(async (s) => {
    await Deno.writeFile(`${s.root}/big.bin`, seededBytes(1 << 20, 4));
    const raw = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    try {
      let received = 0;
      let sent = 0;
      const requests: Packet[] = [
        meta("big.bin"),
        meta("x"), // shortest name: the smallest request there is
        {
          type: "chunk_request",
          requestId: 8,
          token: NO_TOKEN,
          fileId: 1n,
          offset: 0,
          length: 1 << 20,
          blockSize: 1000,
          name: "big.bin",
        },
      ];
      for (const pk of requests) {
        const bytes = encode(pk);
        sent += bytes.length;
        await raw.send(bytes, { transport: "udp", hostname: "127.0.0.1", port: s.port });
        const got = await withTimeout(raw.receive(), 1000);
        assert.ok(got, "an answer came");
        received += got[0].length;
        const r = decode(got[0]);
        assert.ok(r.ok);
        // a metadata request of 33 bytes or more is answered at once (the answer is at most
        // 3x its size: PROTOCOL.md §7.1); anything else gets a RETRY only
        const big = pk.type === "meta_request" && bytes.length >= 33;
        const kind = r.packet.type;
        assert.ok(big ? kind === "meta_reply" || kind === "error" : kind === "retry", kind);
        // and nothing else follows it (no data for the chunk request)
        assert.equal(await withTimeout(raw.receive(), 200), undefined);
      }
      assert.ok(received <= 3 * sent, `${received} bytes sent back for ${sent} received`);
    } finally {
      raw.close();
    }
  });
});

Deno.test("server: a request sent twice is answered once (PROTOCOL.md §6.1 rule 8)", async () => {
  await withServer(async (s) => {
    const data = seededBytes(9000, 6);
    await Deno.writeFile(`${s.root}/d.bin`, data);
    const [m] = await s.ask(meta("d.bin"));
    assert.equal(m.type, "meta_reply");
    const fileId = fileIdOf(m.type === "meta_reply" ? m.digest : new Uint8Array(8));
    const request: Packet = {
      type: "chunk_request",
      requestId: 31,
      token: NO_TOKEN,
      fileId,
      offset: 0,
      length: 9000,
      blockSize: 3000,
      name: "d.bin",
    };
    const first = await s.ask(request, 3); // (gets the token, then the 3 blocks)
    assert.equal(first.length, 3);
    // the same request again (its copy): nothing; the same id asking for other bytes: served
    const copy = await s.ask(request, 1);
    assert.deepEqual(copy, [], "a copy gets no second answer");
    const other = await s.ask({ ...request, offset: 3000, length: 3000 }, 1);
    assert.equal(other.length, 1);
    const stats = await s.stop();
    assert.equal(stats.duplicates, 1);
  });
});

Deno.test("server: HAVE says it holds every piece, PEERS lists nobody (PROTOCOL.md §10)", async () => {
  await withServer(async (s) => {
    const data = seededBytes(600_000, 3);
    await Deno.writeFile(`${s.root}/h.bin`, data);
    const [m] = await s.ask(meta("h.bin"));
    assert.ok(m.type === "meta_reply");
    const fileId = fileIdOf(m.digest);
    const have = { type: "have_request" as const, requestId: 21, token: NO_TOKEN, fileId };
    const [h] = await s.ask({ ...have, since: 0, firstPiece: 0, name: "h.bin" });
    assert.ok(h.type === "have_reply", h.type === "error" ? h.message : h.type);
    assert.equal(h.pieces, Math.ceil(data.length / m.pieceSize));
    assert.equal(h.held, h.pieces);
    assert.equal(h.entries.length, 0);
    const stale = await s.ask({
      ...have,
      requestId: 22,
      fileId: fileId ^ 1n,
      since: 0,
      firstPiece: 0,
      name: "h.bin",
    });
    assert.equal(errorCodeOf(stale), ErrorCode.Stale);
    const [p] = await s.ask({
      type: "peers_request",
      requestId: 23,
      token: NO_TOKEN,
      fileId,
      name: "h.bin",
    });
    assert.ok(p.type === "peers_reply" && p.family === 4 && p.entries.length === 0);
  });
});

Deno.test("server: under --rate, a hash request is answered at once, not behind paced data", async () => {
  const dir = await tempDir();
  const server = await serveInProcess(dir.path, { rate: 256 << 10 });
  const client = new PacketInbox();
  /** The first packet of `type` received (waiting up to `ms`), taken out of the inbox. */
  const take = async (type: Packet["type"], ms: number): Promise<Packet | undefined> => {
    const end = performance.now() + ms;
    for (;;) {
      const i = client.packets.findIndex((p) => p.type === type);
      if (i >= 0) return client.packets.splice(i, 1)[0];
      const left = end - performance.now();
      if (left <= 0 || !(await client.next(left))) return undefined;
    }
  };
  try {
    const data = seededBytes(4 << 20, 4);
    await Deno.writeFile(`${dir.path}/r.bin`, data);
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: server.port };
    const send = (p: Packet) => client.sock.send(encode(p), to);
    await send(meta("r.bin"));
    const m = await take("meta_reply", 5000);
    assert.ok(m?.type === "meta_reply");
    await send(meta("/")); // a token (chunk and hash requests need one)
    const retry = await take("retry", 5000);
    assert.ok(retry?.type === "retry");
    const token = retry.token.slice();
    const fileId = fileIdOf(m.digest);
    // 4 MiB at 256 KiB/s: sixteen seconds of paced data in front...
    for (let i = 0; i < 4; i++) {
      const chunk = { type: "chunk_request" as const, requestId: 100 + i, token, fileId };
      await send({ ...chunk, offset: i << 20, length: 1 << 20, blockSize: 1024, name: "r.bin" });
    }
    // ...and the hash request's answer does not wait for them
    const hashes = { type: "hashes_request" as const, requestId: 200, token, fileId };
    await send({ ...hashes, firstPiece: 0, count: 4, name: "r.bin" });
    const reply = await take("hashes_reply", 5000);
    assert.ok(reply, "answered within 5 s, with 16 s of data queued before it");
  } finally {
    await client.close();
    await server.stop();
    await dir.cleanup();
  }
});

Deno.test("server: a swarm request for a piece another swarm fetcher got is GIVEN_OUT, naming unsent pieces", async () => {
  await withServer(async (s) => {
    const size = 3 * 65536; // three pieces (the in-process server cuts 64 KiB ones)
    await Deno.writeFile(`${s.root}/g.bin`, seededBytes(size, 8));
    const [m] = await s.ask(meta("g.bin"));
    assert.ok(m.type === "meta_reply" && m.pieceSize * 3 === size, "three pieces");
    const fileId = fileIdOf(m.digest);
    const piece0: ChunkRequest = {
      type: "chunk_request",
      requestId: 51,
      token: NO_TOKEN,
      fileId,
      offset: 0,
      length: 8000,
      blockSize: 4000,
      name: "g.bin",
      swarm: true,
    };
    const mine = await s.ask(piece0, 2);
    assert.deepEqual(mine.map((r) => r.type), ["chunk_reply", "chunk_reply"], "a first copy");
    // another swarm fetcher (another port) asks for the same piece
    const other = new PacketInbox();
    try {
      const to = { transport: "udp" as const, hostname: "127.0.0.1", port: s.port };
      const ask = async (p: ChunkRequest) => {
        other.packets.length = 0;
        await other.sock.send(encode({ ...p, token: s.token() }), to);
        while (other.packets.length === 0 && await other.next(1000));
        return other.packets.splice(0);
      };
      const [r] = await ask({ ...piece0, requestId: 52, offset: 8000 });
      assert.ok(r?.type === "error" && r.code === ErrorCode.GivenOut, JSON.stringify(r));
      assert.deepEqual(parseGivenOut(r.message, 3).sort(), [1, 2], r.message);
      const plain = await ask({ ...piece0, requestId: 53, swarm: undefined, length: 4000 });
      assert.equal(plain[0]?.type, "chunk_reply", "a plain request is served");
      const unsent = await ask({ ...piece0, requestId: 54, offset: 2 * 65536, length: 4000 });
      assert.equal(unsent[0]?.type, "chunk_reply", "a piece never sent is served");
    } finally {
      await other.close();
    }
    const stats = await s.stop();
    assert.equal(stats.givenOut, 1);
  });
});
