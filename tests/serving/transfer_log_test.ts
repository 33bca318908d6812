import assert from "node:assert/strict";
import { ErrorCode } from "../../lib/wire/packet.ts";
import {
  MAX_OPEN_TRANSFERS,
  MAX_TRANSFERS_PER_CLIENT,
  TRANSFER_IDLE_MS,
  TransferLog,
} from "../../lib/serving/transfer_log.ts";
import type { LogEvent } from "../../lib/serving/log_event.ts";

const ID = 0xabcn;

function addr(hostname: string, port: number): Deno.NetAddr {
  return { transport: "udp", hostname, port };
}

function newLog(): { log: TransferLog; events: LogEvent[]; ends: () => string[] } {
  const events: LogEvent[] = [];
  return {
    log: new TransferLog((e) => events.push(e)),
    events,
    ends: () => events.filter((e) => e.event === "transfer_end").map((e) => e.msg),
  };
}

Deno.test("TransferLog: a line when a transfer starts, one when it has been idle long enough", () => {
  assert.equal(TRANSFER_IDLE_MS, 2000);
  const { log, events, ends } = newLog();
  const a = addr("10.0.0.1", 4000);
  log.record(a, "f.bin", ID, 1000, 10_000, 3000);
  assert.deepEqual(events.map((e) => e.msg), [
    `transfer 1 start: "f.bin" (3000 bytes) to 10.0.0.1:4000`,
  ]);
  log.record(a, "f.bin", ID, 1000, 10_500);
  log.record(a, "f.bin", ID, 1000, 11_000);
  log.sweep(11_000 + TRANSFER_IDLE_MS - 1);
  assert.deepEqual(ends(), [], "not idle for 2 s yet");
  log.sweep(11_000 + TRANSFER_IDLE_MS);
  assert.deepEqual(ends(), [
    `transfer 1 end: "f.bin" to 10.0.0.1 (1 port): 3000 bytes in 3 requests over 1.000 s ` +
    `(2.9 KiB/s)`,
  ]);
  const end = events.at(-1)!;
  assert.equal(end.fields?.bytes, 3000);
  assert.equal(end.fields?.transfer, 1);
  assert.equal(end.fields?.seconds, 1);
  assert.equal(end.fields?.bytes_per_second, 3000);
  log.sweep(1e12);
  log.flush();
  assert.equal(events.length, 2, "started and ended exactly once");
});

Deno.test("TransferLog: a request keeps the transfer open", () => {
  const { log, ends } = newLog();
  const a = addr("10.0.0.1", 4000);
  for (let t = 0; t <= 10_000; t += 1500) {
    log.record(a, "f", ID, 10, t);
    log.sweep(t + 1499);
  }
  assert.deepEqual(ends(), []);
  log.sweep(9000 + 2000);
  assert.equal(ends().length, 1);
  assert.match(ends()[0], /: 70 bytes in 7 requests over 9\.000 s/);
});

Deno.test("TransferLog: the workers' ports of one fetch are one transfer; hosts and files are not", () => {
  const { log, events, ends } = newLog();
  log.record(addr("10.0.0.1", 4000), "a", ID, 1, 0);
  log.record(addr("10.0.0.1", 4001), "a", ID, 2, 0); // same fetch, another worker's socket
  log.record(addr("10.0.0.1", 4000), "b", ID, 4, 0); // same client, other file
  log.record(addr("10.0.0.2", 4000), "a", ID, 8, 0); // other host
  log.record(addr("10.0.0.1", 4002), "a", ID, 16, 100);
  log.record(addr("10.0.0.1", 4000), "a", ID, 32, 200);
  assert.equal(events.filter((e) => e.event === "transfer_start").length, 3);
  log.sweep(2000);
  assert.equal(ends().length, 2);
  log.sweep(2200);
  assert.equal(ends().length, 3);
  assert.match(
    ends()[2],
    /^transfer 1 end: "a" to 10\.0\.0\.1 \(3 ports\): 51 bytes in 4 requests/,
  );
});

Deno.test("TransferLog: fetches from one host one after the other are separate transfers", () => {
  const { log, events, ends } = newLog();
  // first fetch: META, then two workers
  log.noteMeta("10.0.0.1", "f");
  log.record(addr("10.0.0.1", 5000), "f", ID, 100, 0);
  log.record(addr("10.0.0.1", 5001), "f", ID, 100, 10);
  // second fetch right after (well inside the idle time): META, then new sockets
  log.noteMeta("10.0.0.1", "f");
  log.record(addr("10.0.0.1", 6000), "f", ID, 7, 20);
  log.record(addr("10.0.0.1", 6001), "f", ID, 7, 30);
  // a late request of the first fetch still counts for the first
  log.record(addr("10.0.0.1", 5001), "f", ID, 100, 40);
  const starts = events.filter((e) => e.event === "transfer_start").map((e) => e.fields?.port);
  assert.deepEqual(starts, [5000, 6000]);
  log.flush();
  assert.equal(ends().length, 2);
  assert.match(ends()[0], /^transfer 1 end: .*\(2 ports\): 300 bytes in 3 requests/);
  assert.match(ends()[1], /^transfer 2 end: .*\(2 ports\): 14 bytes in 2 requests/);
});

Deno.test("TransferLog: another version of the file (file id) is another transfer", () => {
  const { log, ends } = newLog();
  log.record(addr("10.0.0.1", 5000), "f", 1n, 1, 0);
  log.record(addr("10.0.0.1", 5000), "f", 2n, 1, 0);
  log.flush();
  assert.equal(ends().length, 2);
});

Deno.test("TransferLog: IPv6 clients are bracketed; names are JSON-quoted", () => {
  const { log, events, ends } = newLog();
  log.record(addr("::1", 5000), 'dir/we"ird\nname', ID, 42, 0);
  log.record(addr("::1", 5001), 'dir/we"ird\nname', ID, 8, 0);
  log.flush();
  assert.equal(events[0].msg, `transfer 1 start: "dir/we\\"ird\\nname" to [::1]:5000`);
  assert.match(
    ends()[0],
    /^transfer 1 end: "dir\/we\\"ird\\nname" to \[::1\] \(2 ports\): 50 bytes/,
  );
  for (const e of events) {
    assert.ok(!e.msg.includes("\n"), "one line even for a name with a newline");
  }
});

Deno.test("TransferLog: after a transfer has ended, new requests start a new transfer", () => {
  const { log, ends } = newLog();
  const a = addr("192.168.1.5", 9000);
  log.record(a, "f", ID, 100, 0);
  log.sweep(5000);
  log.record(a, "f", ID, 200, 6000);
  log.record(a, "f", ID, 300, 6500);
  log.sweep(8499);
  assert.equal(ends().length, 1);
  log.sweep(8500);
  assert.match(ends()[0], /^transfer 1 end: .*: 100 bytes in 1 requests over 0\.001 s/);
  assert.match(ends()[1], /^transfer 2 end: .*: 500 bytes in 2 requests over 0\.500 s/);
});

Deno.test("TransferLog: flush ends every open transfer at once, then nothing", () => {
  const { log, ends } = newLog();
  log.record(addr("10.0.0.1", 1), "x", ID, 1, 1000);
  log.record(addr("10.0.0.2", 2), "y", ID, 2, 1000);
  log.sweep(1500);
  assert.deepEqual(ends(), []);
  log.flush();
  assert.equal(ends().length, 2);
  log.flush();
  log.sweep(1e12);
  assert.equal(ends().length, 2);
});

Deno.test("TransferLog: at most MAX_TRANSFERS_PER_CLIENT transfers per client at once", () => {
  assert.equal(MAX_TRANSFERS_PER_CLIENT, 16);
  const { log } = newLog();
  const a = addr("10.0.0.1", 5000);
  for (let i = 0; i < MAX_TRANSFERS_PER_CLIENT; i++) {
    assert.equal(log.record(a, `f${i}`, ID, 1, 0), undefined, `file ${i}`);
  }
  const refused = log.record(addr("10.0.0.1", 6000), "one-more", ID, 1, 100);
  assert.equal(refused?.code, ErrorCode.TooMany);
  assert.equal(log.record(a, "f3", ID, 1, 100), undefined, "an open transfer goes on");
  assert.equal(log.record(addr("10.0.0.2", 5000), "one-more", ID, 1, 100), undefined, "others");
  assert.equal(log.size, MAX_TRANSFERS_PER_CLIENT + 1);
});

Deno.test("TransferLog: repeated META requests cannot open more than the per-client limit", () => {
  const { log } = newLog();
  let refused = 0;
  for (let port = 1; port <= 100; port++) {
    log.noteMeta("10.0.0.1", "f");
    if (log.record(addr("10.0.0.1", port), "f", ID, 1, 0)) refused++;
  }
  assert.equal(log.size, MAX_TRANSFERS_PER_CLIENT);
  assert.equal(refused, 100 - MAX_TRANSFERS_PER_CLIENT);
});

Deno.test("TransferLog: idle transfers expire and free their client's slots", () => {
  const { log, ends } = newLog();
  const a = addr("10.0.0.1", 5000);
  for (let i = 0; i < MAX_TRANSFERS_PER_CLIENT; i++) log.record(a, `f${i}`, ID, 1, 0);
  assert.equal(log.record(a, "late", ID, 1, TRANSFER_IDLE_MS - 1)?.code, ErrorCode.TooMany);
  // (a refused admission sweeps at most every 100 ms, so a flood cannot make each one costly)
  assert.equal(log.record(a, "late", ID, 1, TRANSFER_IDLE_MS + 98)?.code, ErrorCode.TooMany);
  assert.equal(log.record(a, "late", ID, 1, TRANSFER_IDLE_MS + 99), undefined, "expired");
  assert.equal(ends().length, MAX_TRANSFERS_PER_CLIENT, "each expired transfer logged once");
  assert.equal(log.size, 1);
});

Deno.test("TransferLog: server-wide cap bounds the state whatever the number of clients", () => {
  assert.equal(MAX_OPEN_TRANSFERS, 4096);
  const { log } = newLog();
  let refused = 0;
  for (let i = 0; i < MAX_OPEN_TRANSFERS + 500; i++) {
    const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    if (log.record(addr(host, 1000 + (i % 50)), "f", ID, 1, i % 1000)) refused++;
  }
  assert.equal(log.size, MAX_OPEN_TRANSFERS);
  assert.equal(refused, 500);
  // once they have gone idle, new clients get in again
  assert.equal(log.record(addr("192.0.2.1", 1), "f", ID, 1, 10_000_000), undefined);
  assert.equal(log.size, 1);
});

Deno.test("TransferLog: a flood from many ports of one client keeps one bounded transfer", () => {
  const { log, ends } = newLog();
  for (let port = 1; port <= 60_000; port++) log.record(addr("10.0.0.9", port), "f", ID, 1, 0);
  assert.equal(log.size, 1);
  log.flush();
  assert.equal(ends().length, 1);
  assert.match(ends()[0], /\(60000 ports\): 60000 bytes/);
});
