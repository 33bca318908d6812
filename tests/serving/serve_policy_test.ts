import assert from "node:assert/strict";
import {
  type ChunkRequest,
  ErrorCode,
  HASHES_PER_REPLY,
  MAX_BLOCK_SIZE,
} from "../../lib/wire/packet.ts";
import {
  checkChunkRequest,
  hashesReplyCount,
  MAX_BLOCKS_PER_REQUEST,
  MAX_REQUEST_BYTES,
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
