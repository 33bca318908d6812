import assert from "node:assert/strict";
import { seededRandom } from "../../lib/sim/prng.ts";
import {
  type AnnounceFields,
  AUTH_OPTION_TYPE,
  encodeAnnounceRequest,
  encodeConnectRequest,
  encodeScrapeRequest,
  type Family,
  MAX_REQUEST_SIZE,
  parseResponse,
  splitCompactPeer,
  type TrackerResponse,
} from "../../lib/tracker/bep15_packet.ts";
import { sealTrackerRequest } from "../../lib/tracker/request_auth.ts";
import { DEFAULT_SWARM_LIMITS } from "../../lib/tracker/swarm_table.ts";
import {
  NOT_ALLOWED_MESSAGE,
  TrackerCore,
  type TrackerCoreOptions,
  type TrackerSource,
} from "../../lib/tracker/tracker_core.ts";

const HASH = new Uint8Array(20).fill(0xaa);
const HASH_HEX = "aa".repeat(20);
const ID_KEY = new Uint8Array(16).fill(3);

function core(over: Partial<TrackerCoreOptions> = {}): TrackerCore {
  return new TrackerCore({ idKey: ID_KEY, random: seededRandom(7), ...over });
}

const src4 = (last: number, port = 40000): TrackerSource => ({
  address: new Uint8Array([192, 0, 2, last]),
  port,
});

function reply(
  c: TrackerCore,
  d: Uint8Array,
  s: TrackerSource,
  now: number,
  family: Family = "ipv4",
) {
  const out = c.handle(d, s, now);
  return out === undefined ? undefined : parseResponse(out, family);
}

function connect(c: TrackerCore, s: TrackerSource, now: number): Uint8Array {
  const r = reply(c, encodeConnectRequest(11), s, now);
  assert.ok(r?.action === "connect" && r.transactionId === 11);
  return r.connectionId;
}

function announceBytes(connectionId: Uint8Array, over: Partial<AnnounceFields> = {}): Uint8Array {
  return encodeAnnounceRequest({
    connectionId,
    transactionId: 21,
    infoHash: HASH,
    peerId: new Uint8Array(20).fill(1),
    downloaded: 0n,
    left: 1000n,
    uploaded: 0n,
    event: "started",
    ip: 0,
    key: 1,
    numWant: -1,
    port: 6881,
    ...over,
  });
}

function announced(r: TrackerResponse | undefined) {
  assert.ok(r?.action === "announce", JSON.stringify(r));
  return r;
}

Deno.test("core: connect, announce two peers, scrape, stopped", () => {
  const c = core();
  const a = src4(1), b = src4(2);
  const first = announced(reply(c, announceBytes(connect(c, a, 0), { left: 0n }), a, 1));
  assert.deepEqual([first.peers.length, first.seeders, first.leechers], [0, 1, 0]);
  assert.equal(first.transactionId, 21);
  const idB = connect(c, b, 2);
  const second = announced(reply(c, announceBytes(idB, { port: 7000 }), b, 3));
  assert.deepEqual(second.peers.map((p) => splitCompactPeer(p)), [
    { address: new Uint8Array([192, 0, 2, 1]), port: 6881 },
  ]);
  assert.equal(second.interval, DEFAULT_SWARM_LIMITS.downloadingIntervalS);
  const scrape = reply(c, encodeScrapeRequest(idB, 5, [HASH, new Uint8Array(20)]), b, 4);
  assert.deepEqual(scrape, {
    action: "scrape",
    transactionId: 5,
    entries: [{ seeders: 1, completed: 0, leechers: 1 }, { seeders: 0, completed: 0, leechers: 0 }],
  });
  announced(reply(c, announceBytes(idB, { port: 7000, event: "stopped" }), b, 5));
  const after = reply(c, encodeScrapeRequest(idB, 6, [HASH]), b, 6);
  assert.ok(after?.action === "scrape");
  assert.deepEqual(after.entries, [{ seeders: 1, completed: 0, leechers: 0 }]);
  assert.deepEqual(
    [c.counters.connects, c.counters.announces, c.counters.scrapes, c.counters.errors],
    [2, 3, 2, 0],
  );
});

Deno.test("core: the IP field is ignored and the source address listed", () => {
  const c = core();
  const a = src4(1);
  announced(reply(c, announceBytes(connect(c, a, 0), { ip: 0x01020304, left: 0n }), a, 0));
  const b = src4(2);
  const got = announced(reply(c, announceBytes(connect(c, b, 0)), b, 0));
  assert.deepEqual(splitCompactPeer(got.peers[0]).address, new Uint8Array([192, 0, 2, 1]));
});

Deno.test("core: forged, expired and other addresses' connection ids get nothing", () => {
  const c = core();
  const a = src4(1);
  const id = connect(c, a, 0);
  assert.equal(c.handle(announceBytes(new Uint8Array(8).fill(9)), a, 0), undefined, "forged");
  assert.equal(c.handle(announceBytes(id), src4(2), 0), undefined, "another address");
  assert.equal(c.handle(announceBytes(id), a, 3 * 60_000), undefined, "expired");
  assert.equal(c.handle(encodeScrapeRequest(id, 1, [HASH]), a, 3 * 60_000), undefined);
  assert.equal(c.counters.badConnectionId, 4);
  assert.equal(c.swarms.swarmCount, 0);
  assert.ok(c.handle(announceBytes(id), a, 2 * 60_000), "2 minutes: still good");
});

Deno.test("core: IPv6 sources get 18-byte peers; IPv4-mapped sources count as IPv4", () => {
  const c = core();
  const v6 = (last: number): TrackerSource => {
    const address = new Uint8Array(16);
    address.set([0x20, 0x01, 0x0d, 0xb8]);
    address[15] = last;
    return { address, port: 1 };
  };
  const mapped: TrackerSource = {
    address: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9]),
    port: 1,
  };
  for (const s of [v6(1), mapped]) {
    const out = c.handle(announceBytes(connect(c, s, 0), { left: 0n }), s, 0);
    assert.ok(out);
  }
  const me6 = v6(2);
  const r6 = announced(reply(c, announceBytes(connect(c, me6, 0)), me6, 0, "ipv6"));
  assert.equal(r6.peers.length, 1);
  assert.equal(r6.peers[0].length, 18);
  assert.equal(splitCompactPeer(r6.peers[0]).address[15], 1);
  const me4 = src4(3);
  const r4 = announced(reply(c, announceBytes(connect(c, me4, 0)), me4, 0));
  assert.deepEqual(splitCompactPeer(r4.peers[0]).address, new Uint8Array([192, 0, 2, 9]));
  // the mapped client's connection id is its IPv4 address's
  const id = connect(c, mapped, 1);
  assert.ok(c.handle(announceBytes(id), src4(9), 1), "same address, either spelling");
});

Deno.test("core: whitelist: an unlisted announce gets the error, a scrape zeros", () => {
  const c = core({ whitelist: new Set([HASH_HEX]) });
  const a = src4(1);
  const id = connect(c, a, 0);
  const other = new Uint8Array(20).fill(0xbb);
  assert.deepEqual(reply(c, announceBytes(id, { infoHash: other }), a, 0), {
    action: "error",
    transactionId: 21,
    message: NOT_ALLOWED_MESSAGE,
  });
  assert.equal(c.swarms.swarmCount, 0, "no swarm made for it");
  announced(reply(c, announceBytes(id), a, 0));
  const s = reply(c, encodeScrapeRequest(id, 2, [other, HASH]), a, 0);
  assert.ok(s?.action === "scrape");
  assert.deepEqual(s.entries.map((e) => e.leechers), [0, 1]);
  assert.equal(c.counters.notAllowed, 1);
});

Deno.test("core: --secret-file: announces and scrapes need the tag over the whole request", () => {
  const key = new TextEncoder().encode("0123456789abcdef0123");
  const c = core({ authKey: key });
  const a = src4(1);
  const id = connect(c, a, 0); // connect needs no key: an id alone opens nothing
  const plain = announceBytes(id);
  assert.deepEqual(reply(c, plain, a, 0), {
    action: "error",
    transactionId: 21,
    message: "authentication required",
  });
  const wrong = sealTrackerRequest(plain, new TextEncoder().encode("another key, 16+ bytes"));
  assert.deepEqual(reply(c, wrong, a, 0), {
    action: "error",
    transactionId: 21,
    message: "wrong key",
  });
  const sealed = sealTrackerRequest(plain, key);
  assert.equal(sealed[plain.length], AUTH_OPTION_TYPE);
  announced(reply(c, sealed, a, 0));
  // any byte changed (the IP field, the port...) breaks the tag
  for (const at of [20, 84, 96, 97, sealed.length - 1]) {
    const t = sealed.slice();
    t[at] ^= 1;
    const r = reply(c, t, a, 0);
    assert.ok(r?.action === "error" && r.message === "wrong key", `byte ${at}`);
  }
  // BEP 41 options before the tag are covered too
  const withUrl = announceBytes(id, { options: new Uint8Array([0x2, 2, 0x2f, 0x61]) });
  announced(reply(c, sealTrackerRequest(withUrl, key), a, 0));
  // replayed from elsewhere: the connection id does not match that address
  assert.equal(c.handle(sealed, src4(2), 0), undefined);
  const scrape = encodeScrapeRequest(id, 3, [HASH]);
  assert.equal(reply(c, scrape, a, 0)?.action, "error");
  const s = reply(c, sealTrackerRequest(scrape, key), a, 0);
  assert.ok(s?.action === "scrape");
  assert.deepEqual(s.entries, [{ seeders: 0, completed: 0, leechers: 1 }]);
  assert.equal(c.counters.authFailed, 8);
});

Deno.test("core: malformed datagrams are counted; a proven client learns what was wrong", () => {
  const c = core();
  const a = src4(1);
  for (const d of [new Uint8Array(0), new Uint8Array(15), new Uint8Array(16), new Uint8Array(97)]) {
    assert.equal(c.handle(d, a, 0), undefined);
  }
  assert.equal(c.handle(new Uint8Array(MAX_REQUEST_SIZE + 1), a, 0), undefined);
  assert.deepEqual([c.counters.malformed, c.counters.oversized], [4, 1]);
  const id = connect(c, a, 0);
  const bad = announceBytes(id);
  bad[11] = 7; // action 7
  assert.deepEqual(reply(c, bad, a, 0), {
    action: "error",
    transactionId: 21,
    message: "unknown action",
  });
  bad[11] = 1;
  bad[83] = 9; // event 9
  assert.deepEqual(reply(c, bad, a, 0), {
    action: "error",
    transactionId: 21,
    message: "unknown event",
  });
  const many = encodeScrapeRequest(id, 4, Array.from({ length: 75 }, () => HASH));
  assert.equal(reply(c, many, a, 0)?.action, "error");
  // without a valid id: silence (nothing to aim at a forged address)
  bad[0] ^= 1;
  assert.equal(c.handle(bad, a, 0), undefined);
});

Deno.test("core: a source over its rate is dropped, others are not", () => {
  const c = core({ sourceLimits: { rate: 10, burst: 20, maxSources: 100 } });
  const a = src4(1);
  let answered = 0;
  for (let i = 0; i < 100; i++) if (c.handle(encodeConnectRequest(i), a, 0)) answered++;
  assert.equal(answered, 20, "the burst");
  assert.equal(c.counters.rateLimited, 80);
  assert.ok(c.handle(encodeConnectRequest(1), src4(2), 0), "another source is not affected");
  assert.equal(c.handle(encodeConnectRequest(1), a, 50), undefined, "half a token later");
  assert.ok(c.handle(encodeConnectRequest(1), a, 100), "one token later");
});

Deno.test("core: floods keep every table under its cap", () => {
  const swarmLimits = {
    ...DEFAULT_SWARM_LIMITS,
    maxSwarms: 50,
    maxPeersPerSwarm: 20,
    maxPeers: 300,
  };
  const sourceLimits = { rate: 1000, burst: 2000, maxSources: 500 };
  const c = core({ swarmLimits, sourceLimits });
  const random = seededRandom(99);
  const rnd = (n: number) => Math.floor(random() * n);
  const hash = (i: number) =>
    new Uint8Array(20).fill(i % 256).map((v, j) => j < 2 ? i >> (8 * j) : v);
  // forged ids from 10 000 forged sources: nothing stored but their buckets (bounded)
  for (let i = 0; i < 10_000; i++) {
    const s: TrackerSource = {
      address: new Uint8Array([10, i >> 16, (i >> 8) & 255, i & 255]),
      port: i,
    };
    const d = announceBytes(crypto.getRandomValues(new Uint8Array(8)), { infoHash: hash(i) });
    assert.equal(c.handle(d, s, i), undefined);
    assert.ok(c.limiter.size <= sourceLimits.maxSources);
  }
  assert.equal(c.swarms.swarmCount, 0);
  // proven sources announcing random swarms and ports: the caps hold
  const ids = new Map<number, Uint8Array>();
  for (let i = 0; i < 20_000; i++) {
    const n = rnd(1000);
    const s = src4(n % 250, n);
    const key = n % 250;
    if (!ids.has(key)) ids.set(key, connect(c, s, 100_000));
    const d = announceBytes(ids.get(key)!, { infoHash: hash(rnd(400)), port: 1 + rnd(60_000) });
    const r = c.handle(d, s, 100_000 + i);
    assert.ok(r === undefined || r.length <= 20 + 50 * 6);
    assert.ok(c.swarms.swarmCount <= swarmLimits.maxSwarms);
    assert.ok(c.swarms.peerCount <= swarmLimits.maxPeers);
  }
  assert.ok(c.counters.swarmsFull > 0 && c.counters.unlisted > 0);
  // random bytes and mutated requests from everywhere: counted, never a throw
  const valid = announceBytes(ids.get(1)!);
  for (let i = 0; i < 20_000; i++) {
    const d = i % 2 ? crypto.getRandomValues(new Uint8Array(rnd(200))) : valid.slice(0, rnd(120));
    if (i % 2 === 0) { for (let k = 0; k < 3 && d.length; k++) d[rnd(d.length)] = rnd(256); }
    c.handle(d, src4(1 + rnd(250)), 130_000);
  }
  assert.ok(c.swarms.peerCount <= swarmLimits.maxPeers);
  assert.ok(c.counters.malformed > 0);
  // after the expiry time everything is swept away
  c.tick(130_000 + 10 * 60_000 + 200_000);
  c.tick(130_000 + 30 * 60_000 + 400_000);
  assert.deepEqual([c.swarms.swarmCount, c.swarms.peerCount, c.limiter.size], [0, 0, 0]);
});
