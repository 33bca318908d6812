import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AUTH_TRAILER_SIZE,
  AUTH_WINDOW_MS,
  readKeyFile,
  ReplayGuard,
  RequestAuthenticator,
  seal,
} from "../../lib/wire/auth.ts";
import { decode, encode, ErrorCode, NO_TOKEN, type Packet } from "../../lib/wire/packet.ts";
import {
  exists,
  PacketInbox,
  runUdpget,
  sameBytes,
  seededBytes,
  startServer,
  tempDir,
  writeServersFile,
} from "../harness.ts";
import { ExitCode } from "../../lib/base/exit.ts";

const KEY = new TextEncoder().encode("0123456789abcdef0123456789abcdef");
const NONCE = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
const T0 = 1_800_000_000_000;

function request(name = "f.bin"): Uint8Array {
  return encode({ type: "meta_request", requestId: 77, token: NO_TOKEN, name });
}

Deno.test("auth: a sealed request opens to the original bytes", () => {
  const plain = request();
  const sealed = seal(plain, KEY, T0, NONCE);
  assert.equal(sealed.length, plain.length + AUTH_TRAILER_SIZE);
  assert.equal(decode(sealed).ok, false, "a v1 receiver without the extension refuses it");
  const r = new RequestAuthenticator(KEY).open(sealed, T0 + 5);
  assert.ok(r.ok);
  assert.deepEqual(r.packet, plain);
});

Deno.test("auth: wrong key, missing trailer, stale timestamp and replays are refused", () => {
  const auth = new RequestAuthenticator(KEY);
  const sealed = seal(request(), KEY, T0, NONCE);
  const other = new TextEncoder().encode("another key, also 32 bytes long.");
  assert.deepEqual(auth.open(seal(request(), other, T0, NONCE), T0), {
    ok: false,
    reason: "bad_mac",
  });
  assert.deepEqual(auth.open(request(), T0), { ok: false, reason: "missing" });
  assert.deepEqual(auth.open(request("a-much-longer-name-to-pass-size"), T0), {
    ok: false,
    reason: "missing",
  });
  assert.deepEqual(auth.open(sealed, T0 + AUTH_WINDOW_MS + 1), { ok: false, reason: "stale" });
  assert.deepEqual(auth.open(sealed, T0 - AUTH_WINDOW_MS - 1), { ok: false, reason: "stale" });
  assert.equal(auth.open(sealed, T0).ok, true);
  assert.deepEqual(auth.open(sealed, T0 + 1), { ok: false, reason: "replay" });
  const fresh = seal(request(), KEY, T0, new Uint8Array(8).fill(9));
  assert.equal(auth.open(fresh, T0 + 2).ok, true, "another nonce is another request");
});

Deno.test("auth: property — changing any byte of a sealed request breaks it", () => {
  const sealed = seal(request("some/file.bin"), KEY, T0, NONCE);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: sealed.length - 1 }),
      fc.integer({ min: 1, max: 255 }),
      (at, x) => {
        const bad = sealed.slice();
        bad[at] ^= x;
        const r = new RequestAuthenticator(KEY).open(bad, T0);
        assert.equal(r.ok, false);
      },
    ),
    { seed: 9, numRuns: 1000 },
  );
});

Deno.test("ReplayGuard: bounded memory, and a replay is never accepted, even when full", () => {
  const g = new ReplayGuard(1000, 100);
  for (let i = 0; i < 1000; i++) assert.equal(g.firstUse(T0 + i, BigInt(i), T0 + i), true);
  assert.ok(g.size <= 100, `remembers ${g.size}`);
  for (let i = 0; i < 1000; i++) {
    assert.equal(g.firstUse(T0 + i, BigInt(i), T0 + 999), false, `replay of ${i}`);
  }
  // pairs older than the window are forgotten, and stay refused if the clock steps back
  const w = new ReplayGuard(1000, 100);
  assert.equal(w.firstUse(T0, 1n, T0), true);
  w.firstUse(T0 + 5000, 2n, T0 + 5000);
  assert.equal(w.size, 1);
  assert.equal(w.firstUse(T0, 1n, T0 + 10), false, "clock stepped back: still a replay");
});

Deno.test("readKeyFile: trailing newline ignored; short or missing keys are one-line errors", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir.path}/k`, "0123456789abcdef\n");
    assert.deepEqual(await readKeyFile(`${dir.path}/k`), KEY.subarray(0, 16));
    await Deno.writeTextFile(`${dir.path}/short`, "tooshort\n");
    await assert.rejects(readKeyFile(`${dir.path}/short`), /shorter than 16 bytes/);
    await assert.rejects(readKeyFile(`${dir.path}/none`), /cannot read secret file/);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("e2e: serve --secret-file answers only requests sealed with its key", async () => {
  const dir = await tempDir();
  const root = `${dir.path}/root`;
  await Deno.mkdir(root);
  const data = seededBytes(1 << 20, 31);
  await Deno.writeFile(`${root}/f.bin`, data);
  await Deno.writeTextFile(`${dir.path}/key`, "correct horse battery staple 42\n");
  await Deno.writeTextFile(`${dir.path}/wrong`, "incorrect horse battery staple!\n");
  const server = await startServer(root, ["--secret-file", `${dir.path}/key`]);
  const raw = new PacketInbox();
  try {
    const list = await writeServersFile(dir.path, [server.port]);
    const none = await runUdpget(["fetch", list, "2", "f.bin", "-o", "a.bin"], dir.path);
    assert.equal(none.code, ExitCode.AuthFailed, none.stderr);
    assert.match(none.stderr, /AUTH_FAILED: authentication required/);
    const wrong = await runUdpget(
      ["fetch", list, "2", "f.bin", "-o", "b.bin", "--secret-file", `${dir.path}/wrong`],
      dir.path,
    );
    assert.equal(wrong.code, ExitCode.AuthFailed, wrong.stderr);
    assert.match(wrong.stderr, /AUTH_FAILED: wrong key/);
    for (const f of ["a.bin", "b.bin", "a.bin.part", "b.bin.part"]) {
      assert.equal(await exists(`${dir.path}/${f}`), false, f);
    }
    const ok = await runUdpget(
      ["fetch", list, "2", "f.bin", "--secret-file", `${dir.path}/key`],
      dir.path,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(sameBytes(await Deno.readFile(`${dir.path}/f.bin`), data));

    // without the key, every kind of request gets AUTH_FAILED and nothing else
    const to = { transport: "udp" as const, hostname: "127.0.0.1", port: server.port };
    const asks: Packet[] = [
      { type: "meta_request", requestId: 1, token: NO_TOKEN, name: "f.bin" },
      {
        type: "chunk_request",
        requestId: 2,
        token: NO_TOKEN,
        fileId: 1n,
        offset: 0,
        length: 100,
        blockSize: 100,
        name: "f.bin",
      },
      {
        type: "hashes_request",
        requestId: 3,
        token: NO_TOKEN,
        fileId: 1n,
        firstPiece: 0,
        count: 1,
        name: "f.bin",
      },
    ];
    // replies and noise are never answered (two keyed servers must not bounce errors forever):
    // sent first, so the answers to the requests below prove they were handled
    const notRequests: Packet[] = [
      {
        type: "error",
        requestId: 90,
        code: ErrorCode.AuthFailed,
        message: "authentication required",
      },
      { type: "retry", requestId: 91, token: NO_TOKEN },
    ];
    for (const p of notRequests) await raw.sock.send(encode(p), to);
    for (const p of asks) {
      await raw.sock.send(encode(p), to);
      while (!raw.packets.some((x) => x.requestId === p.requestId)) {
        assert.ok(await raw.next(2000), `an answer to request ${p.requestId}`);
      }
    }
    assert.equal(raw.packets.length, asks.length);
    for (const p of raw.packets) {
      assert.ok(p.type === "error" && p.code === ErrorCode.AuthFailed, JSON.stringify(p));
    }
  } finally {
    await raw.close();
    await server.stop();
    await dir.cleanup();
  }
});
