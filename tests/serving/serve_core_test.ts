import assert from "node:assert/strict";
import {
  MAX_CHARGED_DEBT_MS,
  type RunAction,
  type ServeAction,
  ServeCore,
  type ServedPieces,
} from "../../lib/serving/serve_core.ts";
import { MAX_TRANSFERS_PER_CLIENT, TransferLog } from "../../lib/serving/transfer_log.ts";
import { type ChunkRequest, ErrorCode, NO_TOKEN } from "../../lib/wire/packet.ts";
import { FirstCopyLedgers } from "../../lib/serving/first_copy_ledger.ts";
import { parseGivenOut } from "../../lib/wire/given_out.ts";
import { parseBusyRetry } from "../../lib/wire/busy_retry.ts";
import { seededRandom } from "../../lib/sim/prng.ts";

const FILE_ID = 0x1122334455667788n;
const PEER: Deno.NetAddr = { transport: "udp", hostname: "10.0.0.1", port: 5000 };
const FILE: ServedPieces = { fileId: FILE_ID, size: 10 << 20, changed: false };

function chunk(over: Partial<ChunkRequest> = {}): ChunkRequest {
  return {
    type: "chunk_request",
    requestId: 42,
    token: NO_TOKEN,
    fileId: FILE_ID,
    offset: 0,
    length: 3 << 20,
    blockSize: 8192,
    name: "f.bin",
    ...over,
  };
}

function answer(core: ServeCore, p: ChunkRequest, file = FILE, now = 0): ServeAction[] {
  const out: ServeAction[] = [];
  core.onChunk(now, PEER, p, file, out);
  return out;
}

Deno.test("serve core: a request becomes runs that cover its range in whole blocks", () => {
  const core = new ServeCore({}, 0);
  const p = chunk({ offset: 8192 * 7, length: 3 * (1 << 20) + 100 });
  const runs = answer(core, p) as RunAction[];
  assert.ok(runs.length >= 4 && runs.every((r) => r.kind === "run"));
  let at = p.offset;
  for (const r of runs) {
    assert.equal(r.offset, at, "contiguous");
    assert.ok(r.length <= 1 << 20, "at most one run's bytes");
    assert.equal((r.offset - p.offset) % p.blockSize, 0, "starts on a block of the request");
    assert.deepEqual([r.requestId, r.fileId, r.blockSize, r.at], [42, FILE_ID, 8192, 0]);
    assert.equal(r.unfragmented, false, "fragmentation left to the kernel");
    at += r.length;
  }
  assert.equal(at, p.offset + p.length, "nothing left out, nothing extra");
  const probe = answer(core, chunk({ requestId: 43, length: 8192, unfragmented: true }));
  assert.deepEqual(probe.map((r) => r.kind === "run" && r.unfragmented), [true], "a probe's run");
});

Deno.test("serve core: refusals name the cause (busy, changed, out of range, not held)", () => {
  const core = new ServeCore({}, 0);
  const codes = (p: ChunkRequest, f: ServedPieces) =>
    answer(core, p, f).map((a) => a.kind === "refuse" ? [a.code, a.message] : a.kind);
  assert.deepEqual(
    codes(chunk(), { ...FILE, fileId: undefined, busyMessage: "hashing 40%" }),
    [[ErrorCode.Busy, "hashing 40%"]],
  );
  assert.deepEqual(codes(chunk(), { ...FILE, changed: true }), [[ErrorCode.Stale, "file changed"]]);
  assert.deepEqual(codes(chunk({ fileId: 5n }), FILE), [[ErrorCode.Stale, "file changed"]]);
  assert.equal(
    codes(chunk({ offset: 9 << 20, length: 2 << 20 }), FILE)[0][0],
    ErrorCode.OutOfRange,
  );
  const partial = { ...FILE, holds: (off: number) => off < 1 << 20 };
  assert.deepEqual(codes(chunk({ offset: 2 << 20 }), partial), [[
    ErrorCode.NotHeld,
    "not held yet",
  ]]);
  assert.equal(codes(chunk({ length: 4096 }), partial)[0], "run", "a held range is served");
});

Deno.test("serve core: a copy of a request is a duplicate; another request is not", () => {
  const core = new ServeCore({}, 0);
  assert.equal(core.isDuplicate(0, chunk(), "10.0.0.1", 5000), false);
  assert.equal(core.isDuplicate(1, chunk(), "10.0.0.1", 5000), true);
  assert.equal(core.isDuplicate(1, chunk({ requestId: 43 }), "10.0.0.1", 5000), false);
  assert.equal(core.duplicates, 1);
});

Deno.test("serve core: --rate spaces the runs at the rate, headers counted", () => {
  const rate = 10 << 20; // bytes/s
  const core = new ServeCore({ rate }, 0);
  const runs = answer(core, chunk({ length: 4 << 20 })) as RunAction[];
  assert.ok(runs.length > 50, `runs of a few ms each: ${runs.length}`);
  const last = runs[runs.length - 1];
  const wire = (4 << 20) + Math.ceil((4 << 20) / 8192) * 28;
  const expectMs = (wire / rate) * 1000;
  // the last run leaves when everything before it has been paid for (less the bucket's idle
  // credit of a few ms)
  const end = last.at + (last.length * 1000) / rate;
  assert.ok(end > expectMs - 15 && end < expectMs + 5, `${end} ms, expected about ${expectMs}`);
  for (let i = 1; i < runs.length; i++) assert.ok(runs[i].at >= runs[i - 1].at, "in order");
});

Deno.test("serve core: bytes charged outside the runs (replies) hold back the next run by their time at the rate", () => {
  const rate = 1 << 20;
  const plain = new ServeCore({ rate, creditMs: 0 }, 0);
  const charged = new ServeCore({ rate, creditMs: 0 }, 0);
  charged.charge(0, 100 << 10); // a crowd's hash lists: 100 KiB of replies sent at time 0
  const a = answer(plain, chunk({ length: 8192 })) as RunAction[];
  const b = answer(charged, chunk({ length: 8192 })) as RunAction[];
  const expectMs = ((100 << 10) / rate) * 1000; // 97.7 ms
  const lateMs = b[0].at - a[0].at;
  assert.ok(Math.abs(lateMs - expectMs) < 0.5, `${lateMs} ms later, expected ${expectMs}`);
  const free = new ServeCore({}, 0);
  free.charge(0, 100 << 10); // (no --rate: nothing to hold back)
  assert.equal((answer(free, chunk({ length: 8192 })) as RunAction[])[0].at, 0);
});

Deno.test("serve core: charged bytes hold the data back by MAX_CHARGED_DEBT_MS at most, and count as ahead of the queue only once the runs timed are paid", () => {
  const rate = 1 << 20;
  const core = new ServeCore({ rate, creditMs: 0 }, 0);
  assert.equal(core.chargedAheadMs(0), 0);
  for (let i = 0; i < 10_000; i++) core.charge(0, 1024); // a flood of replies: 10 MiB at once
  const ahead = core.chargedAheadMs(0);
  assert.ok(Math.abs(ahead - MAX_CHARGED_DEBT_MS) < 2, `${ahead} ms`);
  const runs = answer(core, chunk({ length: 8192 })) as RunAction[];
  assert.ok(
    runs[0].at <= MAX_CHARGED_DEBT_MS + 10,
    `the data waits the bound, not 10 s: ${runs[0].at}`,
  );
  assert.equal(core.chargedAheadMs(0), 0, "what holds back the next request now is runs timed");
  core.charge(0, 100 << 10); // past the bound already: nothing more is taken
  assert.equal(core.chargedAheadMs(0), 0);
  core.charge(2000, 100 << 10); // later, once all is paid: replies after the runs were timed
  const expectMs = ((100 << 10) - 1500) / rate * 1000; // (less the bucket's 1500-byte floor)
  assert.ok(Math.abs(core.chargedAheadMs(2000) - expectMs) < 0.1, `${core.chargedAheadMs(2000)}`);
});

Deno.test("serve core: runs timed before a charge leave later by it (replies go first on the link), by MAX_CHARGED_DEBT_MS at most", () => {
  const rate = 1 << 20;
  const core = new ServeCore({ rate, creditMs: 0 }, 0);
  const runs = answer(core, chunk({ length: 256 << 10 })) as RunAction[];
  const last = runs[runs.length - 1];
  assert.equal(core.sendTime(last), last.at, "nothing charged yet");
  core.charge(0, 100 << 10); // a crowd's hash lists, sent while the runs wait
  const shift = core.sendTime(last) - last.at;
  assert.ok(Math.abs(shift - ((100 << 10) / rate) * 1000) < 0.01, `${shift} ms`);
  // a flood of replies for 3 s, at the rate: without the bound the run would wait all of it
  for (let t = 0; t <= 3000; t += 10) core.charge(t, 10 << 10);
  assert.equal(core.sendTime(last) - last.at, MAX_CHARGED_DEBT_MS);
  const unrated = new ServeCore({}, 0);
  const free = answer(unrated, chunk({ length: 8192 })) as RunAction[];
  unrated.charge(0, 1 << 20);
  assert.equal(unrated.sendTime(free[0]), free[0].at, "no --rate: no waiting");
});

Deno.test("serve core: the transfer caps refuse one client's transfer too many", () => {
  const core = new ServeCore({ transfers: new TransferLog(() => {}) }, 0);
  for (let i = 0; i < MAX_TRANSFERS_PER_CLIENT; i++) {
    const out: ServeAction[] = [];
    core.onChunk(0, PEER, chunk({ name: `f${i}`, length: 1444 }), FILE, out);
    assert.equal(out[0].kind, "run");
  }
  const out: ServeAction[] = [];
  core.onChunk(0, PEER, chunk({ name: "one-more", length: 1444 }), FILE, out);
  assert.equal(out.length, 1);
  assert.ok(out[0].kind === "refuse" && out[0].code === ErrorCode.TooMany && out[0].tooMany);
});

Deno.test("serve core: a swarm request for a piece another swarm fetcher got is GIVEN_OUT; plain ones are served", () => {
  const core = new ServeCore({ firstCopies: new FirstCopyLedgers(4, seededRandom(1)) }, 0);
  const file = { ...FILE, pieceSize: 1 << 20 };
  const other: Deno.NetAddr = { ...PEER, port: 5001 };
  const ask = (from: Deno.NetAddr, p: ChunkRequest) => {
    const out: ServeAction[] = [];
    core.onChunk(1, from, p, file, out);
    return out;
  };
  const one = { offset: 1 << 20, length: 1 << 20, swarm: true };
  assert.equal(ask(PEER, chunk({ ...one, requestId: 1 }))[0].kind, "run");
  const refused = ask(other, chunk({ ...one, requestId: 2 }));
  assert.equal(refused.length, 1);
  const r = refused[0];
  assert.ok(r.kind === "refuse" && r.code === ErrorCode.GivenOut);
  const unsent = parseGivenOut(r.message, 10);
  assert.ok(unsent.length > 0 && !unsent.includes(1), `unsent pieces named: ${r.message}`);
  assert.equal(ask(other, chunk({ ...one, requestId: 3, swarm: undefined }))[0].kind, "run");
  assert.equal(ask(PEER, chunk({ ...one, requestId: 4 }))[0].kind, "run", "the holder's own");
  const plainCore = new ServeCore({}, 0);
  const out: ServeAction[] = [];
  plainCore.onChunk(1, other, chunk({ ...one, requestId: 5 }), file, out);
  assert.equal(out[0].kind, "run", "a core without a ledger serves swarm requests too");
});

Deno.test("serve core: with maxBacklogMs, a request past that much of the rate taken is refused BUSY with a retry time", () => {
  const rate = 1 << 20;
  const core = new ServeCore({ rate, creditMs: 0, maxBacklogMs: 100, random: () => 0 }, 0);
  const first = answer(core, chunk({ length: 256 << 10 }));
  assert.ok(first.every((a) => a.kind === "run"), "admitted: nothing queued yet");
  const second = answer(core, chunk({ requestId: 43, offset: 256 << 10, length: 256 << 10 }));
  assert.equal(second.length, 1);
  const busy = second[0];
  assert.ok(busy.kind === "refuse" && busy.code === ErrorCode.Busy, JSON.stringify(busy));
  const retryMs = parseBusyRetry(busy.message);
  // 256 KiB and its headers at 1 MiB/s is ~251 ms queued: back once 100 ms are left
  assert.ok(retryMs !== undefined && retryMs > 140 && retryMs < 160, busy.message);
  assert.equal(core.busy, 1);
  const later = answer(
    core,
    chunk({ requestId: 44, offset: 256 << 10, length: 256 << 10 }),
    FILE,
    200,
  );
  assert.ok(later.every((a) => a.kind === "run"), "served once the queue is short again");
});
