import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ackBlockOf,
  decode,
  encode,
  encodeAck,
  encodeData,
  encodeError,
  encodeOack,
  encodeRequest,
  MAX_ERROR_MESSAGE,
  MAX_OPTIONS,
  type TftpOption,
  type TftpPacket,
  writeDataHeader,
} from "../../lib/tftp/tftp_packet.ts";

// Fixed seed: a failure found once must be reproducible by everyone.
const FC_OPTIONS = { seed: 7, numRuns: 1000 };

function hex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, "");
  return Uint8Array.from(digits.match(/../g) ?? [], (p) => parseInt(p, 16));
}

function ok(bytes: Uint8Array): TftpPacket {
  const r = decode(bytes);
  if (!r.ok) throw new assert.AssertionError({ message: `decode failed: ${r.error}` });
  return r.packet;
}

// ---------------------------------------------------------------- golden vectors (RFC 1350 §5)

Deno.test("codec: an RRQ with options, byte for byte", () => {
  // 0001 "a.bin" 00 "octet" 00 "blksize" 00 "1428" 00 "tsize" 00 "0" 00
  const wire = hex(`0001 612e62696e 00 6f63746574 00 626c6b73697a65 00 31343238 00
    7473697a65 00 30 00`);
  const p: TftpPacket = {
    op: "rrq",
    filename: "a.bin",
    mode: "octet",
    options: [{ name: "blksize", value: "1428" }, { name: "tsize", value: "0" }],
  };
  assert.deepEqual(encode(p), wire);
  assert.deepEqual(ok(wire), p);
});

Deno.test("codec: WRQ, DATA, ACK, ERROR and OACK, byte for byte", () => {
  assert.deepEqual(encodeRequest("wrq", "x", "netascii"), hex("0002 78 00 6e6574617363696900"));
  assert.deepEqual(encodeData(0x1234, hex("aabb")), hex("0003 1234 aabb"));
  assert.deepEqual(encodeData(65536 + 7, new Uint8Array(0)), hex("0003 0007"), "rolls over");
  assert.deepEqual(encodeAck(65535), hex("0004 ffff"));
  assert.deepEqual(
    encodeError(1, "file not found"),
    hex("0005 0001 66696c65206e6f7420666f756e64 00"),
  );
  assert.deepEqual(
    encodeOack([{ name: "blksize", value: "512" }]),
    hex("0006 626c6b73697a6500 35313200"),
  );
  assert.deepEqual(ok(hex("0003 0102 ff")), { op: "data", block: 0x102, data: hex("ff") });
  assert.deepEqual(ok(hex("0004 fffe")), { op: "ack", block: 0xfffe });
  assert.deepEqual(ok(hex("0005 0002 6e6f 00")), { op: "error", code: 2, message: "no" });
  assert.deepEqual(ok(hex("0006 6100 3100")), { op: "oack", options: [{ name: "a", value: "1" }] });
});

Deno.test("codec: writeDataHeader and ackBlockOf work in place", () => {
  const buf = new Uint8Array(8).fill(9);
  writeDataHeader(buf, 0x1ff01);
  assert.deepEqual(buf.subarray(0, 4), hex("0003 ff01"));
  assert.equal(buf[4], 9, "payload untouched");
  assert.equal(ackBlockOf(hex("0004 0001")), 1);
  assert.equal(ackBlockOf(hex("0004 ffff 00")), 0xffff, "trailing bytes are tolerated");
  assert.equal(ackBlockOf(hex("0004 00")), -1, "short");
  assert.equal(ackBlockOf(hex("0003 0001")), -1, "DATA is no ACK");
  assert.equal(ackBlockOf(hex("0104 0001")), -1, "opcode 260");
});

// ---------------------------------------------------------------- leniency and refusals

Deno.test("codec: an incomplete trailing option is ignored, as old clients send them", () => {
  const base = encodeRequest("rrq", "f", "octet", [{ name: "blksize", value: "1024" }]);
  const sloppy = new Uint8Array([...base, ...new TextEncoder().encode("tsize\u00000")]);
  const p = ok(sloppy);
  assert.equal(p.op, "rrq");
  if (p.op === "rrq") assert.deepEqual(p.options, [{ name: "blksize", value: "1024" }]);
  const halfName = new Uint8Array([...base, 0x74, 0x73]);
  assert.equal(ok(halfName).op, "rrq");
});

Deno.test("codec: malformed requests are errors with the opcode, never exceptions", () => {
  const cases: [string, Uint8Array, string][] = [
    ["empty", new Uint8Array(0), "short"],
    ["one byte", hex("00"), "short"],
    ["name without NUL", hex("0001 6162"), "unterminated"],
    ["mode without NUL", hex("0001 61 00 6f63"), "unterminated"],
    ["bad UTF-8 name", hex("0001 ff fe 00 6f6374657400"), "bad_filename"],
    ["opcode 0", hex("0000 0000"), "unknown_opcode"],
    ["opcode 7", hex("0007"), "unknown_opcode"],
    ["short ACK", hex("0004 01"), "short"],
    ["short DATA", hex("0003"), "short"],
    ["short ERROR", hex("0005 00"), "short"],
  ];
  for (const [what, bytes, error] of cases) {
    const r = decode(bytes);
    assert.equal(r.ok, false, what);
    if (!r.ok) assert.equal(r.error, error, what);
  }
  const r = decode(hex("0001 6162"));
  assert.ok(!r.ok && r.opcode === 1, "the opcode is reported when it could be read");
});

Deno.test("codec: more than MAX_OPTIONS options make a request malformed", () => {
  const many: TftpOption[] = Array.from({ length: MAX_OPTIONS + 1 }, (_, i) => ({
    name: `o${i}`,
    value: "1",
  }));
  const r = decode(encodeRequest("rrq", "f", "octet", many));
  assert.ok(!r.ok && r.error === "too_many_options");
  assert.ok(decode(encodeRequest("rrq", "f", "octet", many.slice(0, MAX_OPTIONS))).ok);
});

Deno.test("codec: an ERROR message is cut and kept ASCII; a zero-length name decodes", () => {
  const long = encodeError(0, "x".repeat(1000));
  assert.equal(long.length, 4 + MAX_ERROR_MESSAGE + 1);
  assert.deepEqual(encodeError(0, "é\u0000b"), hex("0005 0000 3f3f62 00"));
  assert.equal(encodeError(0, "abcdef", 2).length, 4 + 2 + 1, "maxMessage");
  assert.deepEqual(ok(encodeRequest("rrq", "", "octet")), {
    op: "rrq",
    filename: "",
    mode: "octet",
    options: [],
  });
  assert.deepEqual(ok(hex("0005 0001 6162")), { op: "error", code: 1, message: "ab" }, "no NUL");
});

// ---------------------------------------------------------------- properties

const text = fc.string({
  unit: fc.integer({ min: 1, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 40,
});
const fileName = fc.string({ maxLength: 80 }).filter((s) => !s.includes("\0"));
const PLAIN = { noNullPrototype: true };
const options = fc.array(fc.record({ name: text, value: text }, PLAIN), { maxLength: 8 });
const u16 = fc.integer({ min: 0, max: 0xffff });

const packetArb: fc.Arbitrary<TftpPacket> = fc.oneof(
  fc.record({
    op: fc.constantFrom("rrq" as const, "wrq" as const),
    filename: fileName,
    mode: text,
    options,
  }, PLAIN),
  fc.record({
    op: fc.constant("data" as const),
    block: u16,
    data: fc.uint8Array({ maxLength: 600 }),
  }, PLAIN),
  fc.record({ op: fc.constant("ack" as const), block: u16 }, PLAIN),
  fc.record({ op: fc.constant("error" as const), code: u16, message: text }, PLAIN),
  fc.record({ op: fc.constant("oack" as const), options }, PLAIN),
);

Deno.test("codec: decode(encode(p)) is p for every packet", () => {
  fc.assert(
    fc.property(packetArb, (p) => {
      assert.deepEqual(ok(encode(p)), p);
    }),
    FC_OPTIONS,
  );
});

Deno.test("codec fuzz: random and mutated datagrams never throw; re-encoding what decodes is stable", () => {
  const seeds = [
    encodeRequest("rrq", "dir/file.bin", "octet", [
      { name: "blksize", value: "1428" },
      { name: "tsize", value: "0" },
      { name: "windowsize", value: "16" },
    ]),
    encodeAck(7),
    encodeError(1, "nope"),
    encodeOack([{ name: "blksize", value: "512" }]),
  ];
  const mutated = fc.tuple(
    fc.constantFrom(...seeds),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
    fc.nat({ max: 64 }),
  ).map(([seed, flips, cut]) => {
    const b = seed.slice(0, Math.max(0, seed.length - cut));
    for (const [at, v] of flips) if (b.length > 0) b[at % b.length] = v;
    return b;
  });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 700 }), mutated), (bytes) => {
      const r = decode(bytes);
      if (!r.ok) return;
      // what decodes re-encodes to something that decodes again, to the same kind of packet
      const again = decode(encode(r.packet));
      assert.ok(again.ok);
      assert.equal(again.packet.op, r.packet.op);
      if (r.packet.op === "data" || r.packet.op === "ack") {
        assert.deepEqual(again.packet, r.packet);
      }
    }),
    { seed: 11, numRuns: 20_000 },
  );
});
