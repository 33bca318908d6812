import assert from "node:assert/strict";
import fc from "fast-check";
import {
  DEFAULT_TIMEOUT_MS,
  MAX_BLKSIZE,
  MAX_WINDOW_BYTES,
  MAX_WINDOWSIZE,
  MIN_BLKSIZE,
  negotiate,
  parseMode,
} from "../../lib/tftp/tftp_options.ts";
import type { TftpOption } from "../../lib/tftp/tftp_packet.ts";

const o = (name: string, value: string): TftpOption => ({ name, value });

Deno.test("options: none asked, none acknowledged: RFC 1350 defaults", () => {
  assert.deepEqual(negotiate([], "octet", 1000), {
    blksize: 512,
    windowsize: 1,
    timeoutMs: DEFAULT_TIMEOUT_MS,
    accepted: [],
  });
});

Deno.test("options: what curl and atftp ask for, answered in request order", () => {
  const n = negotiate(
    [o("tsize", "0"), o("blksize", "1428"), o("timeout", "6"), o("windowsize", "16")],
    "octet",
    123456,
  );
  assert.equal(n.blksize, 1428);
  assert.equal(n.timeoutMs, 6000);
  assert.equal(n.windowsize, 16);
  assert.deepEqual(n.accepted, [
    o("tsize", "123456"),
    o("blksize", "1428"),
    o("timeout", "6"),
    o("windowsize", "16"),
  ]);
});

Deno.test("options: names are case-insensitive and answered as spelled; repeats ignored", () => {
  const n = negotiate([o("BlkSize", "1024"), o("blksize", "2048")], "octet", 1);
  assert.equal(n.blksize, 1024);
  assert.deepEqual(n.accepted, [o("BlkSize", "1024")]);
});

Deno.test("options: out-of-range and malformed values are ignored, big ones lowered", () => {
  const cases: [TftpOption, TftpOption | undefined][] = [
    [o("blksize", "7"), undefined],
    [o("blksize", String(MIN_BLKSIZE)), o("blksize", String(MIN_BLKSIZE))],
    [o("blksize", "65465"), o("blksize", String(MAX_BLKSIZE))],
    [o("blksize", "99999999999"), undefined], // 11 digits
    [o("blksize", "-1"), undefined],
    [o("blksize", "1e3"), undefined],
    [o("blksize", ""), undefined],
    [o("timeout", "0"), undefined],
    [o("timeout", "256"), undefined],
    [o("timeout", "255"), o("timeout", "255")],
    [o("windowsize", "0"), undefined],
    [o("windowsize", "65536"), undefined],
    [o("windowsize", "65535"), o("windowsize", String(MAX_WINDOWSIZE))],
    [o("tsize", "x"), undefined],
    [o("multicast", ""), undefined],
    [o("utimeout", "1000"), undefined],
  ];
  for (const [asked, answer] of cases) {
    const n = negotiate([asked], "octet", 10);
    assert.deepEqual(n.accepted, answer ? [answer] : [], JSON.stringify(asked));
  }
});

Deno.test("options: tsize only in octet mode, and not for an empty file (curl rejects 0)", () => {
  assert.deepEqual(negotiate([o("tsize", "0")], "netascii", 10).accepted, []);
  assert.deepEqual(negotiate([o("tsize", "0")], "octet", 0).accepted, []);
  assert.deepEqual(negotiate([o("tsize", "0")], "octet", 1).accepted, [o("tsize", "1")]);
});

Deno.test("options: the window is capped in bytes as well as in blocks", () => {
  const n = negotiate([o("windowsize", "64"), o("blksize", "65464")], "octet", 1);
  assert.equal(n.windowsize, Math.floor(MAX_WINDOW_BYTES / 65464));
  assert.deepEqual(n.accepted[0], o("windowsize", String(n.windowsize)), "answered lowered");
});

Deno.test("options: whatever the client sends, the values stay within the limits", () => {
  const name = fc.constantFrom("blksize", "timeout", "tsize", "windowsize", "BLKSIZE", "x");
  const value = fc.oneof(fc.nat({ max: 1e11 }).map(String), fc.string({ maxLength: 12 }));
  fc.assert(
    fc.property(fc.array(fc.tuple(name, value), { maxLength: 70 }), fc.nat(), (opts, size) => {
      const n = negotiate(opts.map(([k, v]) => o(k, v)), "octet", size);
      assert.ok(n.blksize >= MIN_BLKSIZE && n.blksize <= MAX_BLKSIZE);
      assert.ok(n.windowsize >= 1 && n.windowsize <= MAX_WINDOWSIZE);
      assert.ok(n.windowsize === 1 || n.windowsize * n.blksize <= MAX_WINDOW_BYTES);
      assert.ok(n.timeoutMs >= 1000 && n.timeoutMs <= 255_000);
      assert.ok(n.accepted.length <= 4);
    }),
    { seed: 3, numRuns: 2000 },
  );
});

Deno.test("options: modes", () => {
  assert.equal(parseMode("octet"), "octet");
  assert.equal(parseMode("OCTET"), "octet");
  assert.equal(parseMode("NetAscii"), "netascii");
  assert.equal(parseMode("mail"), undefined);
  assert.equal(parseMode(""), undefined);
});
