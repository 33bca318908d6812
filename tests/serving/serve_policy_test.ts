import assert from "node:assert/strict";
import { type ChunkRequest, ErrorCode, MAX_BLOCK_SIZE } from "../../lib/wire/packet.ts";
import {
  checkChunkRequest,
  HASHES_PER_REPLY,
  hashesReplyCount,
  MAX_BLOCKS_PER_REQUEST,
  MAX_OPEN_TRANSFERS,
  MAX_REQUEST_BYTES,
  MAX_TRANSFERS_PER_CLIENT,
  TRANSFER_IDLE_MS,
  TransferLog,
} from "../../lib/serving/serve_policy.ts";
import { checkName } from "../../lib/serving/root_path.ts";

// ---------------------------------------------------------------------------------------------
// checkChunkRequest
// ---------------------------------------------------------------------------------------------

const FILE_ID = 0x1234_5678_9abc_def0n;

function req(over: Partial<ChunkRequest> = {}): ChunkRequest {
  return {
    type: "chunk_request",
    requestId: 1,
    token: new Uint8Array(16),
    fileId: FILE_ID,
    offset: 0,
    length: 1400,
    blockSize: 1400,
    name: "file.bin",
    ...over,
  };
}

Deno.test("checkChunkRequest: a valid request is accepted", () => {
  assert.equal(checkChunkRequest(req(), FILE_ID, 10_000), undefined);
  assert.equal(checkChunkRequest(req({ offset: 8600, length: 1400 }), FILE_ID, 10_000), undefined);
  assert.equal(checkChunkRequest(req({ offset: 9999, length: 1 }), FILE_ID, 10_000), undefined);
  assert.equal(
    checkChunkRequest(req({ blockSize: MAX_BLOCK_SIZE }), FILE_ID, 10_000),
    undefined,
  );
  assert.equal(
    checkChunkRequest(
      req({ length: MAX_REQUEST_BYTES, blockSize: MAX_BLOCK_SIZE }),
      FILE_ID,
      MAX_REQUEST_BYTES,
    ),
    undefined,
  );
});

Deno.test("checkChunkRequest: another file id is stale", () => {
  assert.deepEqual(checkChunkRequest(req({ fileId: FILE_ID + 1n }), FILE_ID, 10_000), {
    code: ErrorCode.Stale,
    message: "file changed",
  });
  assert.equal(checkChunkRequest(req({ fileId: 0n }), FILE_ID, 10_000)?.code, ErrorCode.Stale);
});

Deno.test("checkChunkRequest: block size above MAX_BLOCK_SIZE is unsupported", () => {
  const r = checkChunkRequest(req({ blockSize: MAX_BLOCK_SIZE + 1 }), FILE_ID, 10_000);
  assert.deepEqual(r, {
    code: ErrorCode.Unsupported,
    message: `block size above ${MAX_BLOCK_SIZE}`,
  });
});

Deno.test("checkChunkRequest: a range longer than MAX_REQUEST_BYTES is unsupported", () => {
  const r = checkChunkRequest(req({ length: MAX_REQUEST_BYTES + 1 }), FILE_ID, 1 << 30);
  assert.deepEqual(r, {
    code: ErrorCode.Unsupported,
    message: `range longer than ${MAX_REQUEST_BYTES}`,
  });
});

Deno.test("checkChunkRequest: a range ending past the file is out of range", () => {
  assert.deepEqual(checkChunkRequest(req({ offset: 9000, length: 1001 }), FILE_ID, 10_000), {
    code: ErrorCode.OutOfRange,
    message: "range ends past 10000",
  });
  assert.equal(
    checkChunkRequest(req({ offset: 10_000, length: 1 }), FILE_ID, 10_000)?.code,
    ErrorCode.OutOfRange,
  );
  assert.equal(
    checkChunkRequest(req({ offset: 0, length: 1 }), FILE_ID, 0)?.code,
    ErrorCode.OutOfRange,
    "nothing can be read from an empty file",
  );
  assert.equal(
    checkChunkRequest(req({ offset: Number.MAX_SAFE_INTEGER - 10, length: 10 }), FILE_ID, 100)
      ?.code,
    ErrorCode.OutOfRange,
  );
});

Deno.test("checkChunkRequest: a stale file id is reported before anything else", () => {
  const r = checkChunkRequest(
    req({ fileId: 1n, blockSize: MAX_BLOCK_SIZE + 1, length: MAX_REQUEST_BYTES + 1 }),
    FILE_ID,
    10,
  );
  assert.equal(r?.code, ErrorCode.Stale);
});

// ---------------------------------------------------------------------------------------------
// hashesReplyCount
// ---------------------------------------------------------------------------------------------

Deno.test("hashesReplyCount: limited by the request, the reply size and the file", () => {
  assert.equal(HASHES_PER_REPLY, 40);
  assert.equal(hashesReplyCount(0, 10, 100), 10);
  assert.equal(hashesReplyCount(0, 40, 100), 40);
  assert.equal(hashesReplyCount(0, 41, 100), 40);
  assert.equal(hashesReplyCount(0, 1000, 100), 40);
  assert.equal(hashesReplyCount(95, 40, 100), 5);
  assert.equal(hashesReplyCount(99, 40, 100), 1);
  assert.equal(hashesReplyCount(60, 40, 100), 40);
  assert.equal(hashesReplyCount(0, 5, 3), 3);
  assert.equal(hashesReplyCount(0, 0, 100), 0);
});

Deno.test("hashesReplyCount: nothing at or past the last piece", () => {
  assert.equal(hashesReplyCount(100, 10, 100), 0);
  assert.equal(hashesReplyCount(101, 10, 100), 0);
  assert.equal(hashesReplyCount(0, 10, 0), 0);
  assert.equal(hashesReplyCount(2 ** 32 - 1, 40, 100), 0);
});

// ---------------------------------------------------------------------------------------------
// TransferLog
// ---------------------------------------------------------------------------------------------

function addr(hostname: string, port: number): Deno.NetAddr {
  return { transport: "udp", hostname, port };
}

function newLog(): { log: TransferLog; lines: string[] } {
  const lines: string[] = [];
  return { log: new TransferLog((l) => lines.push(l)), lines };
}

Deno.test("TransferLog: one line per transfer, only once it has been idle long enough", () => {
  assert.equal(TRANSFER_IDLE_MS, 2000);
  const { log, lines } = newLog();
  const a = addr("10.0.0.1", 4000);
  log.record(a, "f.bin", 1000, 10_000);
  log.record(a, "f.bin", 1000, 10_500);
  log.record(a, "f.bin", 1000, 11_000);
  log.sweep(11_000);
  log.sweep(12_000);
  log.sweep(11_000 + TRANSFER_IDLE_MS - 1);
  assert.deepEqual(lines, [], "not idle for 2 s yet");
  log.sweep(11_000 + TRANSFER_IDLE_MS);
  assert.deepEqual(lines, [
    `sent "f.bin" to 10.0.0.1 (1 port): 3000 bytes in 3 requests over 1.000 s`,
  ]);
  log.sweep(20_000);
  log.sweep(1e12);
  log.flush();
  assert.equal(lines.length, 1, "logged exactly once");
});

Deno.test("TransferLog: a request keeps the transfer open", () => {
  const { log, lines } = newLog();
  const a = addr("10.0.0.1", 4000);
  for (let t = 0; t <= 10_000; t += 1500) {
    log.record(a, "f", 10, t);
    log.sweep(t + 1499);
  }
  assert.deepEqual(lines, []);
  log.sweep(9000 + 2000);
  assert.deepEqual(lines, [`sent "f" to 10.0.0.1 (1 port): 70 bytes in 7 requests over 9.000 s`]);
});

Deno.test("TransferLog: transfers are keyed by client host and file name, not by port", () => {
  const { log, lines } = newLog();
  log.record(addr("10.0.0.1", 4000), "a", 1, 0);
  log.record(addr("10.0.0.1", 4001), "a", 2, 0); // same host, another worker's socket
  log.record(addr("10.0.0.1", 4000), "b", 4, 0); // same client, other file
  log.record(addr("10.0.0.2", 4000), "a", 8, 0); // other host
  log.record(addr("10.0.0.1", 4002), "a", 16, 100);
  log.record(addr("10.0.0.1", 4000), "a", 32, 200);
  log.sweep(2000);
  assert.deepEqual(lines.sort(), [
    `sent "a" to 10.0.0.2 (1 port): 8 bytes in 1 requests over 0.001 s`,
    `sent "b" to 10.0.0.1 (1 port): 4 bytes in 1 requests over 0.001 s`,
  ]);
  log.sweep(2199);
  assert.equal(lines.length, 2);
  log.sweep(2200);
  assert.equal(lines.length, 3);
  assert.equal(lines[2], `sent "a" to 10.0.0.1 (3 ports): 51 bytes in 4 requests over 0.200 s`);
});

Deno.test("TransferLog: IPv6 clients are bracketed; names are JSON-quoted", () => {
  const { log, lines } = newLog();
  log.record(addr("::1", 5000), 'dir/we"ird\nname', 42, 0);
  log.record(addr("::1", 5001), 'dir/we"ird\nname', 8, 0);
  log.flush();
  assert.deepEqual(lines, [
    `sent "dir/we\\"ird\\nname" to [::1] (2 ports): 50 bytes in 2 requests over 0.001 s`,
  ]);
  assert.ok(!lines[0].includes("\n"), "one line even for a name with a newline");
});

Deno.test("TransferLog: after a transfer is logged, new requests start a new transfer", () => {
  const { log, lines } = newLog();
  const a = addr("192.168.1.5", 9000);
  log.record(a, "f", 100, 0);
  log.sweep(5000);
  log.record(a, "f", 200, 6000);
  log.record(a, "f", 300, 6500);
  log.sweep(8499);
  assert.equal(lines.length, 1);
  log.sweep(8500);
  assert.deepEqual(lines, [
    `sent "f" to 192.168.1.5 (1 port): 100 bytes in 1 requests over 0.001 s`,
    `sent "f" to 192.168.1.5 (1 port): 500 bytes in 2 requests over 0.500 s`,
  ]);
});

Deno.test("TransferLog: flush logs every open transfer at once, then nothing", () => {
  const { log, lines } = newLog();
  log.record(addr("10.0.0.1", 1), "x", 1, 1000);
  log.record(addr("10.0.0.2", 2), "y", 2, 1000);
  log.sweep(1500);
  assert.deepEqual(lines, []);
  log.flush();
  assert.equal(lines.length, 2);
  log.flush();
  log.sweep(1e12);
  assert.equal(lines.length, 2);
});

Deno.test("TransferLog: log() writes straight through", () => {
  const { log, lines } = newLog();
  log.log("listening on 0.0.0.0:9000");
  assert.deepEqual(lines, ["listening on 0.0.0.0:9000"]);
});

// ---------------------------------------------------------------------------------------------
// checkName
// ---------------------------------------------------------------------------------------------

Deno.test("checkName: empty, NUL, backslash and absolute names are refused", () => {
  assert.equal(checkName(""), "empty name");
  assert.equal(checkName("a\0b"), "NUL byte in name");
  assert.equal(checkName("\0"), "NUL byte in name");
  assert.equal(checkName("a\\b"), "backslash in name");
  assert.equal(checkName("..\\etc\\passwd"), "backslash in name");
  assert.equal(checkName("/etc/passwd"), "absolute path");
  assert.equal(checkName("/"), "absolute path");
  assert.equal(checkName("//server/share"), "absolute path");
});

Deno.test("checkName: '..' as a path segment in any position is refused", () => {
  for (
    const name of [
      "..",
      "../a",
      "a/..",
      "a/../b",
      "a/b/../../..",
      "../../etc/passwd",
      "a/../",
      "./..",
      "a//..//b",
      "../",
    ]
  ) {
    assert.equal(checkName(name), "'..' in path", name);
  }
});

Deno.test("checkName: ordinary names, including dots inside segments, are fine", () => {
  for (
    const name of [
      "a",
      "a/b",
      "a..b",
      "..a",
      "a..",
      "...",
      ".hidden",
      "dir/.config",
      "./a",
      "a/./b",
      "v1.2..3.tar.gz",
      "dir/..a/b..",
      "ünïcödé/файл",
    ]
  ) {
    assert.equal(checkName(name), undefined, name);
  }
});

Deno.test("checkChunkRequest: a request may not trigger more than MAX_BLOCKS_PER_REQUEST datagrams", () => {
  const p = {
    type: "chunk_request" as const,
    requestId: 1,
    token: new Uint8Array(16),
    fileId: 7n,
    offset: 0,
    length: MAX_BLOCKS_PER_REQUEST + 1,
    blockSize: 1,
    name: "f",
  };
  assert.equal(checkChunkRequest(p, 7n, 1 << 20)?.code, ErrorCode.Unsupported);
  assert.equal(checkChunkRequest({ ...p, length: MAX_BLOCKS_PER_REQUEST }, 7n, 1 << 20), undefined);
});

Deno.test("TransferLog: at most MAX_TRANSFERS_PER_CLIENT files per client at once", () => {
  assert.equal(MAX_TRANSFERS_PER_CLIENT, 16);
  const { log } = newLog();
  const a = addr("10.0.0.1", 5000);
  for (let i = 0; i < MAX_TRANSFERS_PER_CLIENT; i++) {
    assert.equal(log.record(a, `f${i}`, 1, 0), undefined, `file ${i}`);
  }
  const refused = log.record(addr("10.0.0.1", 6000), "one-more", 1, 100);
  assert.equal(refused?.code, ErrorCode.TooMany);
  assert.equal(log.record(a, "f3", 1, 100), undefined, "an open transfer goes on");
  assert.equal(log.record(addr("10.0.0.2", 5000), "one-more", 1, 100), undefined, "others");
  assert.equal(log.size, MAX_TRANSFERS_PER_CLIENT + 1);
});

Deno.test("TransferLog: idle transfers expire and free their client's slots", () => {
  const { log, lines } = newLog();
  const a = addr("10.0.0.1", 5000);
  for (let i = 0; i < MAX_TRANSFERS_PER_CLIENT; i++) log.record(a, `f${i}`, 1, 0);
  assert.equal(log.record(a, "late", 1, TRANSFER_IDLE_MS - 1)?.code, ErrorCode.TooMany);
  // (a refused admission sweeps at most every 100 ms, so a flood cannot make each one costly)
  assert.equal(log.record(a, "late", 1, TRANSFER_IDLE_MS + 98)?.code, ErrorCode.TooMany);
  assert.equal(log.record(a, "late", 1, TRANSFER_IDLE_MS + 99), undefined, "expired");
  assert.equal(lines.length, MAX_TRANSFERS_PER_CLIENT, "each expired transfer logged once");
  assert.equal(log.size, 1);
});

Deno.test("TransferLog: server-wide cap bounds the state whatever the number of clients", () => {
  assert.equal(MAX_OPEN_TRANSFERS, 4096);
  const { log } = newLog();
  let refused = 0;
  for (let i = 0; i < MAX_OPEN_TRANSFERS + 500; i++) {
    const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    if (log.record(addr(host, 1000 + (i % 50)), "f", 1, i % 1000)) refused++;
  }
  assert.equal(log.size, MAX_OPEN_TRANSFERS);
  assert.equal(refused, 500);
  // once they have gone idle, new clients get in again
  assert.equal(log.record(addr("192.0.2.1", 1), "f", 1, 10_000_000), undefined);
  assert.equal(log.size, 1);
});

Deno.test("TransferLog: a flood from many ports of one client keeps one bounded transfer", () => {
  const { log, lines } = newLog();
  for (let port = 1; port <= 60_000; port++) log.record(addr("10.0.0.9", port), "f", 1, 0);
  assert.equal(log.size, 1);
  log.flush();
  assert.match(lines[0], /\(60000 ports\): 60000 bytes in 60000 requests/);
});
