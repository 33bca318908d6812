import assert from "node:assert/strict";
import fc from "fast-check";
import {
  CHUNK_REPLY_HEADER_SIZE,
  type ChunkReply,
  type ChunkRequest,
  decode,
  type DecodeErrorKind,
  DIGEST_SIZE,
  encode,
  ErrorCode,
  errorCodeName,
  type ErrorPacket,
  fileIdOf,
  type HashesReply,
  type HashesRequest,
  HaveForm,
  type HaveReply,
  type HaveRequest,
  HEADER_SIZE,
  MAGIC,
  MAX_BLOCK_SIZE,
  MAX_DATAGRAM_SIZE,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_HASHES_PER_REPLY,
  MAX_HAVE_BYTES,
  MAX_NAME_BYTES,
  MAX_PEERS_PER_REPLY,
  type MetaReply,
  type MetaRequest,
  NO_TOKEN,
  type Packet,
  PacketType,
  type PeersReply,
  type PeersRequest,
  requestIdOfRequest,
  type RetryPacket,
  TOKEN_SIZE,
  VERSION,
  writeChunkReplyHeader,
} from "../../lib/wire/packet.ts";

// Fixed seed: a failure found once must be reproducible by everyone.
const FC_OPTIONS = { seed: 42, numRuns: 1000 };

// ---------------------------------------------------------------- helpers

/**
 * Parses the golden-vector notation shared with PROTOCOL.md: one field per
 * line, hex digits (single spaces allowed) then two or more spaces and a
 * comment.
 */
function hexBlock(text: string): Uint8Array {
  const digits = text.split("\n")
    .map((line) => line.trim().split(/\s{2,}/)[0].replaceAll(" ", ""))
    .join("");
  assert.match(digits, /^(?:[0-9a-f]{2})*$/, `not a hex block: ${text}`);
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A copy of `bytes` with the given hex bytes written at `offset`. */
function patch(bytes: Uint8Array, offset: number, hex: string): Uint8Array {
  const copy = bytes.slice();
  copy.set(hexBlock(hex), offset);
  return copy;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function decodeOk(bytes: Uint8Array): Packet {
  const result = decode(bytes);
  if (!result.ok) throw new assert.AssertionError({ message: JSON.stringify(result.error) });
  return result.packet;
}

/** Asserts decode fails with `kind` and, when given, the header fields it reports. */
function expectDecodeError(
  bytes: Uint8Array,
  kind: DecodeErrorKind,
  fields: { requestId?: number; version?: number; type?: number } = {},
): void {
  const result = decode(bytes);
  assert.equal(result.ok, false, "expected a decode error");
  if (result.ok) return;
  assert.equal(result.error.kind, kind, result.error.message);
  for (const [key, value] of Object.entries(fields)) {
    assert.equal(result.error[key as keyof typeof fields], value, key);
  }
}

function range(first: number, count: number): Uint8Array {
  return Uint8Array.from({ length: count }, (_, i) => first + i);
}

const TEXT = new TextEncoder();

// ---------------------------------------------------------------- golden vectors
//
// Written by hand from the layout tables, field by field. PROTOCOL.md carries
// the very same blocks (checked below). The story: the file "a.txt" holds the
// 12 bytes "hello world\n"; its SHA-256 is a948904f...a447, so file_id is
// 0xa948904f2f0f479b; with one piece, pieces_root is SHA-256 of that digest.

const CONTENT = TEXT.encode("hello world\n");
const DIGEST = hexBlock("a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447");
const PIECES_ROOT = hexBlock("f83e4b6bba3efac41f1ff56ee97adf7454680fee778924cb5ba06311d136ad1c");
const FILE_ID = 0xa948904f2f0f479bn;
const TOKEN = range(0xa0, TOKEN_SIZE);

interface Golden {
  packet: Packet;
  text: string;
}

const GOLDEN: Record<string, Golden> = {
  meta_request: {
    packet: { type: "meta_request", requestId: 0x01020304, token: NO_TOKEN, name: "a.txt" },
    text: `
5547 01 01 0000 01020304            magic "UG", version 1, type 1, flags 0, request_id
00000000000000000000000000000000    token: none
0005 612e747874                     name_len 5, name "a.txt"
`,
  },
  meta_reply: {
    packet: {
      type: "meta_reply",
      requestId: 0x01020304,
      size: 12,
      mtimeMs: 1_700_000_000_000,
      pieceSize: 262144,
      maxBlock: 65000,
      digest: DIGEST,
      piecesRoot: PIECES_ROOT,
    },
    text: `
5547 01 02 0000 01020304            header, type 2, request_id echoed
000000000000000c                    size 12
0000018bcfe56800                    mtime_ms 1700000000000 (2023-11-14T22:13:20Z)
00040000                            piece_size 262144
fde8                                max_block 65000
01                                  digest_alg 1 = SHA-256
a948904f2f0f479b8f8197694b30184b    digest = SHA-256("hello world\\n") ...
0d2ed1c1cd2a1ec0fb85d299a192a447    ... (file_id = a948904f2f0f479b)
f83e4b6bba3efac41f1ff56ee97adf74    pieces_root = SHA-256(SHA-256 of piece 0) ...
54680fee778924cb5ba06311d136ad1c    ...
`,
  },
  chunk_request: {
    packet: {
      type: "chunk_request",
      requestId: 0x01020305,
      token: TOKEN,
      fileId: FILE_ID,
      offset: 0,
      length: 12,
      blockSize: 8,
      name: "a.txt",
    },
    text: `
5547 01 03 0000 01020305            header, type 3
a0a1a2a3a4a5a6a7a8a9aaabacadaeaf    token, as handed out by RETRY
a948904f2f0f479b                    file_id
0000000000000000                    offset 0
0000000c                            length 12
0008                                block_size 8
0005 612e747874                     name_len 5, name "a.txt"
`,
  },
  chunk_reply_0: {
    packet: {
      type: "chunk_reply",
      requestId: 0x01020305,
      fileId: FILE_ID,
      offset: 0,
      data: CONTENT.subarray(0, 8),
    },
    text: `
5547 01 04 0000 01020305            header, type 4
a948904f2f0f479b                    file_id
0000000000000000                    offset 0
0008                                data_len 8
68656c6c6f20776f                    "hello wo"
`,
  },
  chunk_reply_1: {
    packet: {
      type: "chunk_reply",
      requestId: 0x01020305,
      fileId: FILE_ID,
      offset: 8,
      data: CONTENT.subarray(8),
    },
    text: `
5547 01 04 0000 01020305            header, type 4
a948904f2f0f479b                    file_id
0000000000000008                    offset 8
0004                                data_len 4 (last block is short)
726c640a                            "rld\\n"
`,
  },
  hashes_request: {
    packet: {
      type: "hashes_request",
      requestId: 0x01020306,
      token: TOKEN,
      fileId: FILE_ID,
      firstPiece: 0,
      count: 1,
      name: "a.txt",
    },
    text: `
5547 01 05 0000 01020306            header, type 5
a0a1a2a3a4a5a6a7a8a9aaabacadaeaf    token
a948904f2f0f479b                    file_id
00000000                            first_piece 0
0001                                count 1
0005 612e747874                     name_len 5, name "a.txt"
`,
  },
  hashes_reply: {
    packet: {
      type: "hashes_reply",
      requestId: 0x01020306,
      fileId: FILE_ID,
      firstPiece: 0,
      hashes: DIGEST,
    },
    text: `
5547 01 06 0000 01020306            header, type 6
a948904f2f0f479b                    file_id
00000000                            first_piece 0
0001                                count 1
a948904f2f0f479b8f8197694b30184b    SHA-256 of piece 0 (the whole file here) ...
0d2ed1c1cd2a1ec0fb85d299a192a447    ...
`,
  },
  retry: {
    packet: { type: "retry", requestId: 0x01020305, token: TOKEN },
    text: `
5547 01 07 0000 01020305            header, type 7, request_id of the request to resend
a0a1a2a3a4a5a6a7a8a9aaabacadaeaf    token
`,
  },
  error: {
    packet: {
      type: "error",
      requestId: 0x01020307,
      code: ErrorCode.NotFound,
      message: "no such file: b.txt",
    },
    text: `
5547 01 08 0000 01020307            header, type 8
0001                                code 1 = NOT_FOUND
0013                                msg_len 19
6e6f20737563682066696c653a20622e    "no such file: b."
747874                              "txt"
`,
  },
};

for (const [label, { packet, text }] of Object.entries(GOLDEN)) {
  Deno.test(`golden ${label}: encode gives the hand-written bytes`, () => {
    assert.equal(toHex(encode(packet)), toHex(hexBlock(text)));
  });
  Deno.test(`golden ${label}: decode gives the packet`, () => {
    assert.deepStrictEqual(decode(hexBlock(text)), { ok: true, packet });
  });
}

Deno.test("golden story is self-consistent: digests, file_id, block split", async () => {
  const sha256 = async (b: Uint8Array) =>
    new Uint8Array(await crypto.subtle.digest("SHA-256", b.slice()));
  assert.deepStrictEqual(await sha256(CONTENT), DIGEST);
  // One piece (12 bytes < piece_size), so pieces_root = SHA-256(hash of piece 0).
  assert.deepStrictEqual(await sha256(DIGEST), PIECES_ROOT);
  assert.equal(fileIdOf(DIGEST), FILE_ID);
  const blocks = [GOLDEN.chunk_reply_0, GOLDEN.chunk_reply_1].map((g) => g.packet as ChunkReply);
  assert.deepStrictEqual(concat(...blocks.map((b) => b.data)), CONTENT);
});

/** Golden blocks of PROTOCOL.md, keyed by the name in `<!-- golden:NAME -->`. */
function protocolExamples(markdown: string): Map<string, string> {
  const examples = new Map<string, string>();
  for (const m of markdown.matchAll(/<!-- golden:(\w+) -->\s*```text\n([\s\S]*?)```/g)) {
    examples.set(m[1], m[2]);
  }
  return examples;
}

const protocolUrl = new URL("../../PROTOCOL.md", import.meta.url);

Deno.test({
  name: "PROTOCOL.md hex examples equal the golden vectors",
  // Runs under `deno task test` (--allow-read); plain `deno test` reports it ignored.
  ignore: Deno.permissions.querySync({ name: "read", path: protocolUrl }).state !== "granted",
  fn: () => {
    const examples = protocolExamples(Deno.readTextFileSync(protocolUrl));
    assert.ok(examples.size >= 5, `only ${examples.size} examples found`);
    for (const [label, text] of examples) {
      assert.ok(label in GOLDEN, `PROTOCOL.md example ${label} has no golden vector`);
      assert.equal(toHex(hexBlock(text)), toHex(hexBlock(GOLDEN[label].text)), label);
    }
  },
});

// ---------------------------------------------------------------- arbitraries

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const safeU64 = fc.maxSafeNat();
const fixedBytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const token = fc.oneof(fc.constant(NO_TOKEN), fixedBytes(TOKEN_SIZE));
// Up to 256 code points of up to 4 bytes each: never above MAX_NAME_BYTES.
const name = fc.string({ unit: "binary", minLength: 1, maxLength: 256 });

// decode builds ordinary objects and deepStrictEqual compares prototypes, so no null prototypes.
const PLAIN = { noNullPrototype: true };

const metaRequestArb: fc.Arbitrary<MetaRequest> = fc.record({
  type: fc.constant("meta_request" as const),
  requestId: u32,
  token,
  name,
}, PLAIN);

const metaReplyArb: fc.Arbitrary<MetaReply> = fc.record({
  type: fc.constant("meta_reply" as const),
  requestId: u32,
  size: safeU64,
  mtimeMs: safeU64,
  pieceSize: fc.integer({ min: 1, max: 0xffffffff }),
  maxBlock: fc.integer({ min: 1, max: MAX_BLOCK_SIZE }),
  digest: fixedBytes(DIGEST_SIZE),
  piecesRoot: fixedBytes(DIGEST_SIZE),
}, PLAIN);

const chunkRequestArb: fc.Arbitrary<ChunkRequest> = fc.record({
  type: fc.constant("chunk_request" as const),
  requestId: u32,
  token,
  fileId: u64,
  offset: safeU64,
  length: fc.integer({ min: 1, max: 0xffffffff }),
  blockSize: fc.integer({ min: 1, max: 0xffff }),
  name,
}, PLAIN).map((p) => ({ ...p, offset: Math.min(p.offset, Number.MAX_SAFE_INTEGER - p.length) }));

const chunkReplyArb: fc.Arbitrary<ChunkReply> = fc.record({
  type: fc.constant("chunk_reply" as const),
  requestId: u32,
  fileId: u64,
  offset: safeU64,
  data: fc.uint8Array({ minLength: 1, maxLength: 2000 }),
}, PLAIN).map((p) => ({
  ...p,
  offset: Math.min(p.offset, Number.MAX_SAFE_INTEGER - p.data.length),
}));

const hashesRequestArb: fc.Arbitrary<HashesRequest> = fc.record({
  type: fc.constant("hashes_request" as const),
  requestId: u32,
  token,
  fileId: u64,
  firstPiece: u32,
  count: fc.integer({ min: 1, max: 0xffff }),
  name,
}, PLAIN);

const hashesReplyArb: fc.Arbitrary<HashesReply> = fc.record({
  type: fc.constant("hashes_reply" as const),
  requestId: u32,
  fileId: u64,
  firstPiece: u32,
  hashes: fc.integer({ min: 1, max: 64 }).chain((n) => fixedBytes(n * DIGEST_SIZE)),
}, PLAIN);

const retryArb: fc.Arbitrary<RetryPacket> = fc.record({
  type: fc.constant("retry" as const),
  requestId: u32,
  token,
}, PLAIN);

const errorArb: fc.Arbitrary<ErrorPacket> = fc.record({
  type: fc.constant("error" as const),
  requestId: u32,
  code: u16,
  // At most 64 code points = 256 bytes, so nothing is truncated and the round trip is exact.
  message: fc.string({ unit: "binary", maxLength: 64 }),
}, PLAIN);

const haveRequestArb: fc.Arbitrary<HaveRequest> = fc.record({
  type: fc.constant("have_request" as const),
  requestId: u32,
  token,
  fileId: u64,
  since: u32,
  firstPiece: u32,
  name,
  wait: fc.constant(true),
}, {
  ...PLAIN,
  requiredKeys: ["type", "requestId", "token", "fileId", "since", "firstPiece", "name"],
});

const haveReplyArb: fc.Arbitrary<HaveReply> = fc.record({
  type: fc.constant("have_reply" as const),
  requestId: u32,
  fileId: u64,
  pieces: u32,
  held: u32,
  form: fc.constantFrom(HaveForm.List, HaveForm.Bitfield),
  first: u32,
  entries: fc.uint8Array({ maxLength: MAX_HAVE_BYTES }),
  fetching: fc.integer({ min: 0, max: 32 }).chain((n) => fixedBytes(4 * n)),
}, PLAIN).map((p) => ({
  ...p,
  held: Math.min(p.held, p.pieces),
  entries: p.form === HaveForm.List ? p.entries.slice(0, p.entries.length & ~3) : p.entries,
}));

const peersRequestArb: fc.Arbitrary<PeersRequest> = fc.record({
  type: fc.constant("peers_request" as const),
  requestId: u32,
  token,
  fileId: u64,
  name,
}, PLAIN);

const peersReplyArb: fc.Arbitrary<PeersReply> = fc.constantFrom(4, 6).chain((family) =>
  fc.record({
    type: fc.constant("peers_reply" as const),
    requestId: u32,
    fileId: u64,
    family: fc.constant(family),
    entries: fc.integer({ min: 0, max: MAX_PEERS_PER_REPLY }).chain((n) =>
      fixedBytes(n * (family === 4 ? 6 : 18))
    ),
  }, PLAIN)
);

const packetArb: fc.Arbitrary<Packet> = fc.oneof(
  metaRequestArb,
  metaReplyArb,
  chunkRequestArb,
  chunkReplyArb,
  hashesRequestArb,
  hashesReplyArb,
  retryArb,
  errorArb,
  haveRequestArb,
  haveReplyArb,
  peersRequestArb,
  peersReplyArb,
);

/** Decoding must never throw; a successful decode must re-encode to the very same bytes. */
function checkTotalAndCanonical(bytes: Uint8Array): void {
  const result = decode(bytes);
  assert.equal(typeof result.ok, "boolean");
  if (result.ok) assert.equal(toHex(encode(result.packet)), toHex(bytes));
  else assert.equal(typeof result.error.message, "string");
}

// ---------------------------------------------------------------- properties

Deno.test("property: decode(encode(p)) equals p, also from a subarray at an odd offset", () => {
  fc.assert(
    fc.property(packetArb, fc.integer({ min: 0, max: 7 }), (packet, pad) => {
      const bytes = encode(packet);
      assert.ok(bytes.length <= MAX_DATAGRAM_SIZE);
      assert.deepStrictEqual(decode(bytes), { ok: true, packet });
      const host = new Uint8Array(pad + bytes.length + 5).fill(0xee);
      host.set(bytes, pad);
      assert.deepStrictEqual(decode(host.subarray(pad, pad + bytes.length)), { ok: true, packet });
    }),
    FC_OPTIONS,
  );
});

Deno.test("property: random bytes never make decode throw", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), checkTotalAndCanonical),
    FC_OPTIONS,
  );
});

Deno.test("property: random bodies behind a valid header never make decode throw", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10 }),
      u32,
      fc.uint8Array({ maxLength: 300 }),
      (type, requestId, body) => {
        const header = new Uint8Array(HEADER_SIZE);
        new DataView(header.buffer).setUint16(0, MAGIC);
        header[2] = VERSION;
        header[3] = type;
        new DataView(header.buffer).setUint32(6, requestId);
        checkTotalAndCanonical(concat(header, body));
      },
    ),
    FC_OPTIONS,
  );
});

Deno.test("property: every strict prefix of a valid encoding is rejected as short", () => {
  fc.assert(
    fc.property(packetArb, (packet) => {
      const bytes = encode(packet);
      for (let cut = 0; cut < bytes.length; cut++) {
        expectDecodeError(bytes.subarray(0, cut), "short");
      }
    }),
    { ...FC_OPTIONS, numRuns: 300 },
  );
});

Deno.test("property: single-byte mutations never make decode throw", () => {
  fc.assert(
    fc.property(
      packetArb,
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (packet, position, xor) => {
        const bytes = encode(packet);
        bytes[position % bytes.length] ^= xor;
        checkTotalAndCanonical(bytes);
      },
    ),
    FC_OPTIONS,
  );
});

// ---------------------------------------------------------------- decode errors

const META_REQUEST = hexBlock(GOLDEN.meta_request.text);
const META_REPLY = hexBlock(GOLDEN.meta_reply.text);
const CHUNK_REQUEST = hexBlock(GOLDEN.chunk_request.text);
const CHUNK_REPLY = hexBlock(GOLDEN.chunk_reply_1.text);
const HASHES_REPLY = hexBlock(GOLDEN.hashes_reply.text);
const ERROR = hexBlock(GOLDEN.error.text);
const RID = 0x01020304;

Deno.test("decode: bad magic", () => {
  expectDecodeError(patch(META_REQUEST, 0, "5548"), "bad_magic");
  expectDecodeError(hexBlock("4755"), "bad_magic");
});

Deno.test("decode: other version reports bad_version with the request_id", () => {
  expectDecodeError(patch(META_REQUEST, 2, "02"), "bad_version", { requestId: RID, version: 2 });
  // A version-2 datagram may have a completely different body: no length check applies.
  expectDecodeError(patch(META_REQUEST, 2, "02").subarray(0, 12), "bad_version", {
    requestId: RID,
  });
  // Too short to hold a request_id: still bad_version, without one.
  const short = decode(hexBlock("5547 02 01 00"));
  assert.ok(!short.ok && short.error.kind === "bad_version" && short.error.requestId === undefined);
});

Deno.test("decode: unknown type reports unknown_type with the request_id", () => {
  expectDecodeError(patch(META_REQUEST, 3, "0d"), "unknown_type", { requestId: RID, type: 13 });
  expectDecodeError(patch(META_REQUEST, 3, "00"), "unknown_type", { requestId: RID, type: 0 });
});

Deno.test("decode: any nonzero flag is bad_flags", () => {
  expectDecodeError(patch(META_REQUEST, 4, "0001"), "bad_flags", { requestId: RID, type: 1 });
  expectDecodeError(patch(META_REQUEST, 4, "8000"), "bad_flags", { requestId: RID });
});

Deno.test("decode: flags bit 1 (unfragmented) is a CHUNK_REQUEST's only", () => {
  const r = decode(patch(CHUNK_REQUEST, 4, "0002"));
  assert.ok(r.ok && r.packet.type === "chunk_request" && r.packet.unfragmented === true);
  const plain = decode(CHUNK_REQUEST);
  assert.ok(plain.ok && plain.packet.type === "chunk_request");
  assert.equal(plain.packet.unfragmented, undefined, "absent unless the bit is set");
  // with other bits, or on any other type, it is still a flag nobody knows
  expectDecodeError(patch(CHUNK_REQUEST, 4, "0003"), "bad_flags", { type: 3 });
  expectDecodeError(patch(META_REQUEST, 4, "0002"), "bad_flags", { requestId: RID, type: 1 });
  expectDecodeError(patch(CHUNK_REPLY, 4, "0002"), "bad_flags");
});

Deno.test("encode: an unfragmented CHUNK_REQUEST sets flags bit 1 and round-trips", () => {
  const r = decode(CHUNK_REQUEST);
  assert.ok(r.ok && r.packet.type === "chunk_request");
  const bytes = encode({ ...r.packet, unfragmented: true });
  assert.deepEqual(bytes, patch(CHUNK_REQUEST, 4, "0002"), "only the flags differ");
  const back = decode(bytes);
  assert.ok(back.ok);
  assert.deepEqual(back.packet, { ...r.packet, unfragmented: true });
});

Deno.test("flags bit 2 (swarm) is a CHUNK_REQUEST's only, alone or with bit 1", () => {
  const r = decode(CHUNK_REQUEST);
  assert.ok(r.ok && r.packet.type === "chunk_request");
  const bytes = encode({ ...r.packet, swarm: true });
  assert.deepEqual(bytes, patch(CHUNK_REQUEST, 4, "0004"), "only the flags differ");
  const back = decode(bytes);
  assert.ok(back.ok);
  assert.deepEqual(back.packet, { ...r.packet, swarm: true });
  const both = decode(patch(CHUNK_REQUEST, 4, "0006"));
  assert.ok(both.ok && both.packet.type === "chunk_request");
  assert.ok(both.packet.swarm === true && both.packet.unfragmented === true);
  expectDecodeError(patch(CHUNK_REQUEST, 4, "0008"), "bad_flags", { type: 3 });
  expectDecodeError(patch(META_REQUEST, 4, "0004"), "bad_flags", { requestId: RID, type: 1 });
  expectDecodeError(patch(HASHES_REPLY, 4, "0004"), "bad_flags");
});

Deno.test("flags bit 2 (swarm) on a HASHES_REQUEST: round trip; no other bit", () => {
  const plain: Packet = {
    type: "hashes_request",
    requestId: RID,
    token: new Uint8Array(16).fill(3),
    fileId: 7n,
    firstPiece: 4,
    count: 9,
    name: "f",
  };
  const bytes = encode({ ...plain, swarm: true });
  assert.deepEqual(bytes, patch(encode(plain), 4, "0004"), "only the flags differ");
  const back = decode(bytes);
  assert.ok(back.ok);
  assert.deepEqual(back.packet, { ...plain, swarm: true });
  expectDecodeError(patch(encode(plain), 4, "0002"), "bad_flags", {
    type: PacketType.HashesRequest,
  });
});

Deno.test("flags bit 2 (may wait) on a HAVE_REQUEST: round trip; no other bit; not on its reply", () => {
  const plain: Packet = {
    type: "have_request",
    requestId: RID,
    token: new Uint8Array(16).fill(3),
    fileId: 7n,
    since: 12,
    firstPiece: 0,
    name: "swarm",
  };
  const bytes = encode({ ...plain, wait: true });
  assert.deepEqual(bytes, patch(encode(plain), 4, "0004"), "only the flags differ");
  const back = decode(bytes);
  assert.ok(back.ok);
  assert.deepEqual(back.packet, { ...plain, wait: true });
  const unflagged = decode(encode(plain));
  assert.ok(unflagged.ok && unflagged.packet.type === "have_request");
  assert.equal(unflagged.packet.wait, undefined);
  expectDecodeError(patch(encode(plain), 4, "0002"), "bad_flags", {
    type: PacketType.HaveRequest,
  });
  const reply = encode({
    type: "have_reply",
    requestId: RID,
    fileId: 7n,
    pieces: 8,
    held: 0,
    form: 0,
    first: 0,
    entries: new Uint8Array(0),
    fetching: new Uint8Array(0),
  });
  expectDecodeError(patch(reply, 4, "0004"), "bad_flags");
});

Deno.test("decode: trailing bytes are bad_length", () => {
  const fields = { requestId: RID, type: PacketType.MetaRequest, version: VERSION };
  expectDecodeError(concat(META_REQUEST, hexBlock("00")), "bad_length", fields);
  expectDecodeError(concat(META_REPLY, hexBlock("00")), "bad_length");
  expectDecodeError(concat(ERROR, hexBlock("00")), "bad_length");
  // data_len / count say less than what follows
  expectDecodeError(concat(CHUNK_REPLY, hexBlock("00")), "bad_length");
  expectDecodeError(concat(HASHES_REPLY, new Uint8Array(32)), "bad_length");
  expectDecodeError(hexBlock("5547 01 01 0000 01020304"), "short");
});

Deno.test("decode: names must be 1..1024 bytes of valid UTF-8", () => {
  // META_REQUEST name_len is at 26, name at 28.
  const withName = (nameHex: string) => {
    const name = hexBlock(nameHex);
    const len = hexBlock(name.length.toString(16).padStart(4, "0"));
    return concat(META_REQUEST.subarray(0, 26), len, name);
  };
  expectDecodeError(withName("ff"), "bad_field", { requestId: RID });
  expectDecodeError(withName("61c0 80"), "bad_field"); // overlong NUL
  expectDecodeError(withName("eda080"), "bad_field"); // UTF-8 of a lone surrogate
  expectDecodeError(withName("61e282"), "bad_field"); // cut inside a character
  expectDecodeError(withName(""), "bad_field");
  expectDecodeError(concat(withName("61".repeat(1025))), "bad_field");
  assert.equal((decodeOk(withName("61".repeat(1024))) as MetaRequest).name, "a".repeat(1024));
  // A leading BOM is part of the name, not stripped.
  assert.equal((decodeOk(withName("efbbbf61")) as MetaRequest).name, "\uFEFFa");
});

Deno.test("decode: u64 above MAX_SAFE_INTEGER is bad_field", () => {
  expectDecodeError(patch(META_REPLY, 10, "0020000000000000"), "bad_field", { requestId: RID });
  expectDecodeError(patch(META_REPLY, 18, "ffffffffffffffff"), "bad_field");
  expectDecodeError(patch(CHUNK_REQUEST, 34, "8000000000000000"), "bad_field");
  const max = decodeOk(patch(META_REPLY, 10, "001fffffffffffff")) as MetaReply;
  assert.equal(max.size, Number.MAX_SAFE_INTEGER);
  // file_id is opaque: every u64 is valid.
  const big = decodeOk(patch(CHUNK_REQUEST, 26, "ffffffffffffffff")) as ChunkRequest;
  assert.equal(big.fileId, 0xffffffffffffffffn);
});

Deno.test("decode: zero length, zero block size and overflowing ranges are bad_field", () => {
  // CHUNK_REQUEST: token 10..26, file_id 26..34, offset 34..42, length 42..46, block_size 46..48
  expectDecodeError(patch(CHUNK_REQUEST, 42, "00000000"), "bad_field", { requestId: 0x01020305 });
  expectDecodeError(patch(CHUNK_REQUEST, 46, "0000"), "bad_field");
  expectDecodeError(patch(CHUNK_REQUEST, 34, "001ffffffffffff8"), "bad_field"); // offset + 12
  // CHUNK_REPLY: data_len 0, data_len above MAX_BLOCK_SIZE
  expectDecodeError(
    hexBlock("5547 01 04 0000 01020305 a948904f2f0f479b 0000000000000000 0000"),
    "bad_field",
  );
  expectDecodeError(patch(CHUNK_REPLY, 26, "fde9"), "bad_field");
  // HASHES_REQUEST / HASHES_REPLY count 0
  expectDecodeError(patch(hexBlock(GOLDEN.hashes_request.text), 40, "0000"), "bad_field");
  expectDecodeError(patch(HASHES_REPLY, 22, "0000"), "bad_field");
});

Deno.test("decode: META_REPLY field ranges", () => {
  // size 10..18, mtime 18..26, piece_size 26..30, max_block 30..32, digest_alg 32
  expectDecodeError(patch(META_REPLY, 26, "00000000"), "bad_field");
  expectDecodeError(patch(META_REPLY, 30, "0000"), "bad_field");
  expectDecodeError(patch(META_REPLY, 30, "fde9"), "bad_field");
  expectDecodeError(patch(META_REPLY, 32, "02"), "bad_field");
  expectDecodeError(patch(META_REPLY, 32, "00"), "bad_field");
});

Deno.test("decode: ERROR message limits", () => {
  const error = (len: number, msgHex: string) =>
    concat(ERROR.subarray(0, 12), hexBlock(len.toString(16).padStart(4, "0")), hexBlock(msgHex));
  expectDecodeError(error(257, "61".repeat(257)), "bad_field");
  expectDecodeError(error(1, "ff"), "bad_field");
  assert.equal((decodeOk(error(256, "61".repeat(256))) as ErrorPacket).message.length, 256);
  assert.equal((decodeOk(error(0, "")) as ErrorPacket).message, "");
  // Codes this version does not define still decode: the receiver treats them as failures.
  assert.equal((decodeOk(patch(ERROR, 10, "0063")) as ErrorPacket).code, 99);
});

Deno.test("decode: byte fields are views into the input, not copies", () => {
  const host = concat(new Uint8Array(3), CHUNK_REPLY);
  const input = host.subarray(3);
  const reply = decodeOk(input) as ChunkReply;
  assert.equal(reply.data.buffer, input.buffer);
  assert.equal(reply.data.byteOffset, 3 + CHUNK_REPLY_HEADER_SIZE);
  const meta = decodeOk(META_REPLY) as MetaReply;
  assert.equal(meta.digest.buffer, META_REPLY.buffer);
  assert.equal(meta.piecesRoot.buffer, META_REPLY.buffer);
  assert.equal((decodeOk(CHUNK_REQUEST) as ChunkRequest).token.buffer, CHUNK_REQUEST.buffer);
  assert.equal((decodeOk(HASHES_REPLY) as HashesReply).hashes.buffer, HASHES_REPLY.buffer);
});

// ---------------------------------------------------------------- encode

function metaRequest(name: string): MetaRequest {
  return { type: "meta_request", requestId: 1, token: NO_TOKEN, name };
}

Deno.test("encode: name limits", () => {
  assert.throws(() => encode(metaRequest("a".repeat(MAX_NAME_BYTES + 1))), RangeError);
  assert.throws(() => encode(metaRequest("é".repeat(513))), RangeError); // 1026 bytes
  assert.throws(() => encode(metaRequest("")), RangeError);
  assert.throws(() => encode(metaRequest("a\uD800")), RangeError); // lone surrogate
  assert.equal(encode(metaRequest("a".repeat(MAX_NAME_BYTES))).length, 28 + MAX_NAME_BYTES);
});

Deno.test("encode: ERROR messages are truncated at a UTF-8 boundary, never refused", () => {
  const roundTrip = (message: string) =>
    (decodeOk(encode({ type: "error", requestId: 1, code: 3, message })) as ErrorPacket).message;
  assert.equal(roundTrip("x".repeat(300)), "x".repeat(MAX_ERROR_MESSAGE_BYTES));
  assert.equal(roundTrip("é".repeat(200)), "é".repeat(128)); // 2-byte chars, exact fit
  assert.equal(roundTrip("ab" + "€".repeat(100)), "ab" + "€".repeat(84)); // 254 bytes
  assert.equal(roundTrip("a" + "😀".repeat(100)), "a" + "😀".repeat(63)); // 253 bytes
});

Deno.test("encode: out-of-range values throw RangeError", () => {
  const chunk = GOLDEN.chunk_request.packet as ChunkRequest;
  const reply = GOLDEN.chunk_reply_1.packet as ChunkReply;
  const meta = GOLDEN.meta_reply.packet as MetaReply;
  const bad: Packet[] = [
    { ...chunk, token: new Uint8Array(15) },
    { ...chunk, offset: -1 },
    { ...chunk, offset: 0.5 },
    { ...chunk, offset: Number.MAX_SAFE_INTEGER - 11 },
    { ...chunk, length: 0 },
    { ...chunk, length: 2 ** 32 },
    { ...chunk, blockSize: 0 },
    { ...chunk, fileId: -1n },
    { ...chunk, fileId: 1n << 64n },
    { ...chunk, requestId: 2 ** 32 },
    { ...reply, data: new Uint8Array(0) },
    { ...reply, data: new Uint8Array(MAX_BLOCK_SIZE + 1) },
    { ...meta, size: 2 ** 53 },
    { ...meta, mtimeMs: -1 },
    { ...meta, maxBlock: MAX_BLOCK_SIZE + 1 },
    { ...meta, digest: new Uint8Array(31) },
    { ...(GOLDEN.hashes_reply.packet as HashesReply), hashes: new Uint8Array(33) },
    { ...(GOLDEN.hashes_reply.packet as HashesReply), hashes: new Uint8Array(0) },
    {
      ...(GOLDEN.hashes_reply.packet as HashesReply),
      hashes: new Uint8Array((MAX_HASHES_PER_REPLY + 1) * DIGEST_SIZE),
    },
  ];
  for (const packet of bad) assert.throws(() => encode(packet), RangeError);
});

Deno.test("encode: the largest packets fit MAX_DATAGRAM_SIZE exactly or below", () => {
  const reply = GOLDEN.chunk_reply_1.packet as ChunkReply;
  const full = encode({ ...reply, data: new Uint8Array(MAX_BLOCK_SIZE) });
  assert.equal(full.length, MAX_DATAGRAM_SIZE);
  assert.equal(MAX_DATAGRAM_SIZE, 65028);
  const hashes = new Uint8Array(MAX_HASHES_PER_REPLY * DIGEST_SIZE).fill(7);
  const packet: HashesReply = { ...(GOLDEN.hashes_reply.packet as HashesReply), hashes };
  const bytes = encode(packet);
  assert.ok(bytes.length <= MAX_DATAGRAM_SIZE);
  assert.deepStrictEqual(decode(bytes), { ok: true, packet });
  assert.equal(MAX_HASHES_PER_REPLY, 2031);
});

// ---------------------------------------------------------------- helpers API

Deno.test("writeChunkReplyHeader writes what encode writes, in place", () => {
  const data = range(1, 100);
  const fileId = 0xfedcba9876543210n;
  const offset = 2 ** 40 + 7;
  const buf = new Uint8Array(MAX_DATAGRAM_SIZE).fill(0xaa);
  buf.set(data, CHUNK_REPLY_HEADER_SIZE);
  const n = writeChunkReplyHeader(buf, 0xffffffff, fileId, offset, data.length);
  assert.equal(n, CHUNK_REPLY_HEADER_SIZE + data.length);
  const expected = encode({ type: "chunk_reply", requestId: 0xffffffff, fileId, offset, data });
  assert.equal(toHex(buf.subarray(0, n)), toHex(expected));
  assert.equal(buf[n], 0xaa, "nothing written past the datagram");
  assert.throws(() => writeChunkReplyHeader(new Uint8Array(127), 1, 1n, 0, 100), RangeError);
  assert.throws(() => writeChunkReplyHeader(buf, 1, 1n, 0, 0), RangeError);
  assert.throws(() => writeChunkReplyHeader(buf, 1, 1n, -1, 1), RangeError);
});

Deno.test("errorCodeName", () => {
  const names = [
    "NOT_FOUND",
    "ACCESS_DENIED",
    "BAD_REQUEST",
    "OUT_OF_RANGE",
    "STALE",
    "BUSY",
    "BAD_VERSION",
    "UNSUPPORTED",
    "AUTH_FAILED",
    "INTERNAL",
    "TOO_MANY",
    "TOO_BIG",
    "NOT_HELD",
    "GIVEN_OUT",
  ];
  assert.deepStrictEqual(Object.values(ErrorCode).map(errorCodeName), names);
  assert.equal(errorCodeName(ErrorCode.Stale), "STALE");
  assert.equal(errorCodeName(99), "UNKNOWN(99)");
  assert.equal(errorCodeName(0), "UNKNOWN(0)");
});

Deno.test("fileIdOf reads the first 8 digest bytes big-endian, from any view", () => {
  assert.equal(fileIdOf(DIGEST), FILE_ID);
  const host = concat(hexBlock("ffff"), range(0, 32));
  assert.equal(fileIdOf(host.subarray(2)), 0x0001020304050607n);
  assert.throws(() => fileIdOf(new Uint8Array(8)), RangeError);
});

Deno.test("constants", () => {
  assert.equal(toHex(NO_TOKEN), "00".repeat(TOKEN_SIZE));
  assert.equal(CHUNK_REPLY_HEADER_SIZE, HEADER_SIZE + 8 + 8 + 2);
  assert.deepStrictEqual(Object.values(PacketType), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

Deno.test("requestIdOfRequest: only version-1 request types yield an id", () => {
  const meta = encode({ type: "meta_request", requestId: 5, token: NO_TOKEN, name: "f" });
  assert.equal(requestIdOfRequest(meta), 5);
  const err = encode({ type: "error", requestId: 6, code: ErrorCode.AuthFailed, message: "x" });
  assert.equal(requestIdOfRequest(err), undefined, "replies are never answered");
  const retry = encode({ type: "retry", requestId: 7, token: NO_TOKEN });
  assert.equal(requestIdOfRequest(retry), undefined);
  const v2 = meta.slice();
  v2[2] = 2;
  assert.equal(requestIdOfRequest(v2), undefined);
  assert.equal(requestIdOfRequest(meta.subarray(0, HEADER_SIZE - 1)), undefined);
  const noise = meta.slice();
  noise[0] = 0;
  assert.equal(requestIdOfRequest(noise), undefined);
});

Deno.test("decode: HAVE_REPLY fields are checked: held within pieces, form, entry bytes", () => {
  const reply = (o: Partial<HaveReply>): HaveReply => ({
    type: "have_reply",
    requestId: RID,
    fileId: FILE_ID,
    pieces: 100,
    held: 3,
    form: HaveForm.List,
    first: 0,
    entries: new Uint8Array(12),
    fetching: new Uint8Array(0),
    ...o,
  });
  const ok = encode(reply({}));
  assert.deepStrictEqual(decodeOk(ok), reply({}));
  // held (offset 22) above pieces
  expectDecodeError(patch(ok, 22, "00000065"), "bad_field", { requestId: RID });
  // form (offset 26) 2 is not defined
  expectDecodeError(patch(ok, 26, "02"), "bad_field", { requestId: RID });
  // a count (offset 31) that promises more entries than the datagram holds
  expectDecodeError(patch(ok, 31, "0004"), "short", { requestId: RID });
  // more than MAX_HAVE_BYTES of entries
  expectDecodeError(patch(ok, 31, "0101"), "bad_field", { requestId: RID });
  assert.throws(() => encode(reply({ held: 101 })), RangeError);
  assert.throws(() => encode(reply({ entries: new Uint8Array(MAX_HAVE_BYTES + 1) })), RangeError);
});

Deno.test("decode: PEERS_REPLY family is 4 or 6 and entries are whole", () => {
  const v4: PeersReply = {
    type: "peers_reply",
    requestId: RID,
    fileId: FILE_ID,
    family: 4,
    entries: new Uint8Array(12),
  };
  const ok = encode(v4);
  assert.deepStrictEqual(decodeOk(ok), v4);
  expectDecodeError(patch(ok, 18, "05"), "bad_field", { requestId: RID });
  expectDecodeError(ok.subarray(0, ok.length - 1), "short", { requestId: RID });
  expectDecodeError(patch(ok, 19, "33"), "bad_field", { requestId: RID });
  assert.throws(() => encode({ ...v4, entries: new Uint8Array(7) }), RangeError);
});

Deno.test("requestIdOfRequest: HAVE and PEERS requests are requests, their replies are not", () => {
  const have = encode({
    type: "have_request",
    requestId: RID,
    token: NO_TOKEN,
    fileId: FILE_ID,
    since: 0,
    firstPiece: 0,
    name: "a",
  });
  assert.equal(requestIdOfRequest(have), RID);
  const peers = encode({
    type: "peers_request",
    requestId: RID,
    token: NO_TOKEN,
    fileId: 1n,
    name: "a",
  });
  assert.equal(requestIdOfRequest(peers), RID);
  const reply = encode({
    type: "peers_reply",
    requestId: RID,
    fileId: 1n,
    family: 6,
    entries: new Uint8Array(0),
  });
  assert.equal(requestIdOfRequest(reply), undefined);
});
