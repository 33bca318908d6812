import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ANNOUNCE_EVENTS,
  ANNOUNCE_REQUEST_SIZE,
  type AnnounceFields,
  AUTH_OPTION_TYPE,
  compactPeer,
  encodeAnnounceRequest,
  encodeAnnounceResponse,
  encodeConnectRequest,
  encodeConnectResponse,
  encodeErrorResponse,
  encodeScrapeRequest,
  encodeScrapeResponse,
  MAX_SCRAPE_HASHES,
  parseRequest,
  parseResponse,
  splitCompactPeer,
} from "../../lib/tracker/bep15_packet.ts";

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

const announceArb: fc.Arbitrary<AnnounceFields> = fc.record({
  connectionId: bytes(8),
  transactionId: u32,
  infoHash: bytes(20),
  peerId: bytes(20),
  downloaded: u64,
  left: u64,
  uploaded: u64,
  event: fc.constantFrom(...ANNOUNCE_EVENTS),
  ip: u32,
  key: u32,
  numWant: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
  port: fc.integer({ min: 0, max: 0xffff }),
});

function announce(over: Partial<AnnounceFields> = {}): AnnounceFields {
  return {
    connectionId: new Uint8Array(8).fill(7),
    transactionId: 42,
    infoHash: new Uint8Array(20).fill(1),
    peerId: new Uint8Array(20).fill(2),
    downloaded: 0n,
    left: 100n,
    uploaded: 0n,
    event: "started",
    ip: 0,
    key: 9,
    numWant: -1,
    port: 6881,
    ...over,
  };
}

Deno.test("bep15: connect request has the magic id and 16 bytes, and round-trips", () => {
  const req = encodeConnectRequest(0xdeadbeef);
  assert.equal(req.length, 16);
  assert.deepEqual([...req.subarray(0, 8)], [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80]);
  assert.deepEqual(parseRequest(req), {
    ok: true,
    request: { action: "connect", transactionId: 0xdeadbeef },
  });
  const wrong = req.slice();
  wrong[7] ^= 1;
  const r = parseRequest(wrong);
  assert.ok(!r.ok && r.error.fault === "protocol_id");
});

Deno.test("bep15: announce requests round-trip (property)", () => {
  fc.assert(fc.property(announceArb, (f) => {
    const r = parseRequest(encodeAnnounceRequest(f));
    assert.ok(r.ok && r.request.action === "announce");
    const a = r.request;
    assert.equal(encodeAnnounceRequest(f).length, ANNOUNCE_REQUEST_SIZE);
    assert.deepEqual(
      [a.connectionId, a.transactionId, a.infoHash, a.peerId, a.downloaded, a.left, a.uploaded],
      [f.connectionId, f.transactionId, f.infoHash, f.peerId, f.downloaded, f.left, f.uploaded],
    );
    assert.deepEqual(
      [a.event, a.ip, a.key, a.numWant, a.port, a.urlData.length, a.auth],
      [f.event, f.ip, f.key, f.numWant, f.port, 0, undefined],
    );
  }));
});

Deno.test("bep15: BEP 41 options are tolerated: URL data kept, unknown skipped, truncation ignored", () => {
  const url1 = new TextEncoder().encode("/announce");
  const url2 = new TextEncoder().encode("?k=v");
  const options = new Uint8Array([
    0x1,
    0x2,
    url1.length,
    ...url1,
    0x1,
    0x7e, // unknown type with a body: skipped
    3,
    9,
    9,
    9,
    0x2,
    url2.length,
    ...url2,
    0x0, // EndOfOptions: what follows is not read
    0x2,
    200,
  ]);
  const r = parseRequest(encodeAnnounceRequest(announce({ options })));
  assert.ok(r.ok && r.request.action === "announce");
  assert.equal(new TextDecoder().decode(r.request.urlData), "/announce?k=v");
  // an option whose length runs past the end: the announce still parses
  const cut = parseRequest(
    encodeAnnounceRequest(announce({ options: new Uint8Array([0x2, 50, 1, 2]) })),
  );
  assert.ok(cut.ok && cut.request.action === "announce" && cut.request.urlData.length === 0);
  const lone = parseRequest(encodeAnnounceRequest(announce({ options: new Uint8Array([0x2]) })));
  assert.ok(lone.ok);
});

Deno.test("bep15: the auth option is found only when it ends the datagram", () => {
  const tag = new Uint8Array(16).fill(0xab);
  const last = new Uint8Array([0x2, 1, 0x41, AUTH_OPTION_TYPE, 16, ...tag]);
  const r = parseRequest(encodeAnnounceRequest(announce({ options: last })));
  assert.ok(r.ok && r.request.action === "announce");
  assert.deepEqual(r.request.auth, { offset: ANNOUNCE_REQUEST_SIZE + 3, tag });
  const notLast = new Uint8Array([AUTH_OPTION_TYPE, 16, ...tag, 0x2, 1, 0x41]);
  const r2 = parseRequest(encodeAnnounceRequest(announce({ options: notLast })));
  assert.ok(r2.ok && r2.request.action === "announce" && r2.request.auth === undefined);

  const hashes = [new Uint8Array(20).fill(3), new Uint8Array(20).fill(4)];
  const scrape = encodeScrapeRequest(new Uint8Array(8), 5, hashes);
  const sealed = new Uint8Array([...scrape, AUTH_OPTION_TYPE, 16, ...tag]);
  const s = parseRequest(sealed);
  assert.ok(s.ok && s.request.action === "scrape");
  assert.deepEqual(s.request.infoHashes, hashes);
  assert.deepEqual(s.request.auth, { offset: scrape.length, tag });
});

Deno.test("bep15: scrape requests: 1..74 hashes, whole entries only", () => {
  const h = (i: number) => new Uint8Array(20).fill(i);
  for (const n of [1, 2, MAX_SCRAPE_HASHES]) {
    const hashes = Array.from({ length: n }, (_, i) => h(i));
    const r = parseRequest(encodeScrapeRequest(new Uint8Array(8).fill(1), 77, hashes));
    assert.ok(r.ok && r.request.action === "scrape");
    assert.deepEqual(r.request.infoHashes, hashes);
    assert.equal(r.request.transactionId, 77);
  }
  const tooMany = Array.from({ length: MAX_SCRAPE_HASHES + 1 }, (_, i) => h(i));
  const r = parseRequest(encodeScrapeRequest(new Uint8Array(8), 1, tooMany));
  assert.ok(!r.ok && r.error.fault === "too_many_hashes" && r.error.header?.transactionId === 1);
  const none = parseRequest(encodeScrapeRequest(new Uint8Array(8), 1, []));
  assert.ok(!none.ok && none.error.fault === "length");
  const ragged = encodeScrapeRequest(new Uint8Array(8), 1, [h(1)]).subarray(0, 16 + 19);
  const rr = parseRequest(ragged);
  assert.ok(!rr.ok && rr.error.fault === "length");
});

Deno.test("bep15: short, unknown action and bad event are errors with the header when there is one", () => {
  for (let n = 0; n < 16; n++) {
    const r = parseRequest(new Uint8Array(n));
    assert.ok(!r.ok && r.error.fault === "short" && r.error.header === undefined, `${n}`);
  }
  const full = encodeAnnounceRequest(announce());
  const short = parseRequest(full.subarray(0, 97));
  assert.ok(!short.ok && short.error.fault === "short" && short.error.header?.action === 1);
  const act = full.slice();
  act[11] = 9;
  const ra = parseRequest(act);
  assert.ok(!ra.ok && ra.error.fault === "action" && ra.error.header?.transactionId === 42);
  const reply = encodeErrorResponse(1, "x"); // action 3 is a reply's
  assert.ok(!parseRequest(new Uint8Array([...reply, ...new Uint8Array(16)])).ok);
  const ev = full.slice();
  ev[83] = 4;
  const re = parseRequest(ev);
  assert.ok(!re.ok && re.error.fault === "event");
});

Deno.test("bep15: responses round-trip, IPv4 6-byte and IPv6 18-byte peers", () => {
  const id = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(parseResponse(encodeConnectResponse(9, id), "ipv4"), {
    action: "connect",
    transactionId: 9,
    connectionId: id,
  });
  const v4 = [
    compactPeer(new Uint8Array([127, 0, 0, 1]), 6881),
    compactPeer(new Uint8Array([10, 0, 0, 2]), 1),
  ];
  const a = encodeAnnounceResponse({
    transactionId: 3,
    interval: 10,
    leechers: 4,
    seeders: 5,
    peers: new Uint8Array([...v4[0], ...v4[1]]),
  });
  assert.equal(a.length, 20 + 12);
  assert.deepEqual(parseResponse(a, "ipv4"), {
    action: "announce",
    transactionId: 3,
    interval: 10,
    leechers: 4,
    seeders: 5,
    peers: v4,
  });
  assert.deepEqual(splitCompactPeer(v4[0]), {
    address: new Uint8Array([127, 0, 0, 1]),
    port: 6881,
  });
  const v6addr = new Uint8Array(16);
  v6addr[15] = 1;
  const v6 = compactPeer(v6addr, 51413);
  assert.equal(v6.length, 18);
  const a6 = encodeAnnounceResponse({
    transactionId: 1,
    interval: 60,
    leechers: 0,
    seeders: 1,
    peers: v6,
  });
  const p6 = parseResponse(a6, "ipv6");
  assert.ok(p6?.action === "announce" && p6.peers.length === 1);
  assert.deepEqual(splitCompactPeer(p6.peers[0]), { address: v6addr, port: 51413 });
  const entries = [{ seeders: 1, completed: 2, leechers: 3 }, {
    seeders: 0,
    completed: 0,
    leechers: 9,
  }];
  assert.deepEqual(parseResponse(encodeScrapeResponse(8, entries), "ipv4"), {
    action: "scrape",
    transactionId: 8,
    entries,
  });
  assert.deepEqual(parseResponse(encodeErrorResponse(2, "info-hash not allowed"), "ipv6"), {
    action: "error",
    transactionId: 2,
    message: "info-hash not allowed",
  });
});

Deno.test("bep15: random and mutated datagrams never throw (property)", () => {
  const valid = [
    encodeConnectRequest(1),
    encodeAnnounceRequest(announce({ options: new Uint8Array([0x2, 3, 1, 2, 3]) })),
    encodeScrapeRequest(new Uint8Array(8), 1, [new Uint8Array(20)]),
  ];
  const mutated = fc.tuple(
    fc.constantFrom(...valid),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
    fc.nat({ max: 200 }),
  ).map(([base, flips, cut]) => {
    const b = base.slice(0, Math.max(0, base.length - (cut % (base.length + 1))) || base.length);
    for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
    return b;
  });
  const datagram = fc.oneof(fc.uint8Array({ maxLength: 2100 }), mutated);
  fc.assert(
    fc.property(datagram, (d) => {
      parseRequest(d);
      parseResponse(d, "ipv4");
      parseResponse(d, "ipv6");
    }),
    { numRuns: 5000 },
  );
});
