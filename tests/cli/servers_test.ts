import assert from "node:assert/strict";
import fc from "fast-check";
import {
  parseServerList,
  type ServerLineError,
  type ServerList,
  type ServerSpec,
} from "../../lib/cli/servers.ts";
import { formatServer } from "../../lib/base/format.ts";

/** Parses text that must contain exactly one line with an error, and returns that error. */
function onlyError(text: string): ServerLineError {
  const result = parseServerList(text);
  assert.equal(result.errors.length, 1, JSON.stringify(result.errors));
  return result.errors[0];
}

/** Parses text that must be error-free and returns its servers. */
function clean(text: string): ServerSpec[] {
  const result = parseServerList(text);
  assert.deepEqual(result.errors, []);
  return result.servers;
}

Deno.test("accepts host port and host:port for IPv4 and hostnames", () => {
  assert.deepEqual(clean("127.0.0.1 9000\n10.0.0.2:9001\nexample.com 53\nlocalhost:65535\n"), [
    { host: "127.0.0.1", port: 9000, line: 1, family: "ipv4" },
    { host: "10.0.0.2", port: 9001, line: 2, family: "ipv4" },
    { host: "example.com", port: 53, line: 3, family: "name" },
    { host: "localhost", port: 65535, line: 4, family: "name" },
  ]);
});

Deno.test("accepts all IPv6 forms and keeps the host without brackets", () => {
  assert.deepEqual(clean("[::1]:9000\n[fe80::2] 9001\n::3 9002\n\t2001:DB8::4\t\t9003\n"), [
    { host: "::1", port: 9000, line: 1, family: "ipv6" },
    { host: "fe80::2", port: 9001, line: 2, family: "ipv6" },
    { host: "::3", port: 9002, line: 3, family: "ipv6" },
    { host: "2001:DB8::4", port: 9003, line: 4, family: "ipv6" },
  ]);
});

Deno.test("accepts full, compressed and IPv4-suffixed IPv6 addresses", () => {
  const hosts = [
    "1:2:3:4:5:6:7:8",
    "::",
    "1::",
    "::ffff:192.0.2.1",
    "64:ff9b::10.0.0.1",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:7::",
  ];
  const text = hosts.map((h, i) => `[${h}]:${i + 1}`).join("\n");
  assert.deepEqual(clean(text).map((s) => s.host), hosts);
});

Deno.test("port bounds and leading zeros", () => {
  assert.deepEqual(clean("a 1\nb 65535\nc 0080\n").map((s) => s.port), [1, 65535, 80]);
});

Deno.test("hostname label and length limits", () => {
  const label63 = "a".repeat(63);
  const long = [label63, label63, label63, "b".repeat(61)].join("."); // 253 chars
  assert.equal(long.length, 253);
  assert.deepEqual(clean(`${label63} 1\n${long} 2\nA-1.b2.C 3\n1a.example 4\n`).length, 4);
  assert.equal(onlyError(`${"a".repeat(64)} 1`).message, `invalid hostname "${"a".repeat(60)}…"`);
  assert.match(onlyError(`${long}b 1`).message, /^invalid hostname /);
});

Deno.test("LF, CRLF, lone CR and mixed line endings", () => {
  const expected = [
    { host: "a", port: 1, line: 1, family: "name" },
    { host: "b", port: 2, line: 2, family: "name" },
  ];
  assert.deepEqual(clean("a 1\nb 2\n"), expected);
  assert.deepEqual(clean("a 1\r\nb 2\r\n"), expected);
  assert.deepEqual(clean("a 1\rb 2\r"), expected);
  assert.deepEqual(clean("a 1\r\nb 2\r").map((s) => s.line), [1, 2]);
  // "\r\n" is one break, but "\n\r" is two: the blank line between still counts.
  assert.deepEqual(clean("a 1\n\rb 2").map((s) => s.line), [1, 3]);
});

Deno.test("missing final newline, BOM, comments and blank lines", () => {
  assert.deepEqual(clean("a 1\nb 2").map((s) => s.host), ["a", "b"]);
  assert.deepEqual(clean("\uFEFFa 1\n"), [{ host: "a", port: 1, line: 1, family: "name" }]);
  const text = [
    "# servers for the demo",
    "",
    "   \t ",
    "  a 1   # trailing comment",
    "b:2#no space before comment",
    "\t# indented comment",
    "[::1]:3 #",
  ].join("\n");
  assert.deepEqual(clean(text).map((s) => [s.host, s.line]), [["a", 4], ["b", 5], ["::1", 7]]);
  assert.deepEqual(parseServerList(""), { servers: [], errors: [], warnings: [] });
  assert.deepEqual(parseServerList("\uFEFF\n# only comments\n\n"), {
    servers: [],
    errors: [],
    warnings: [],
  });
});

Deno.test("a BOM not at the very start is an error", () => {
  assert.equal(onlyError("a 1\n\uFEFFb 2").line, 2);
});

Deno.test("error line numbers count blank and comment lines, across line endings", () => {
  const text = "# header\r\n\r\na 1\r\rbad\n# c\nb 70000";
  const result = parseServerList(text);
  assert.deepEqual(result.errors.map((e) => e.line), [5, 7]);
  assert.deepEqual(result.servers.map((s) => s.line), [3]);
});

Deno.test("port errors", () => {
  assert.equal(onlyError("a 70000").message, 'port "70000" is not in 1..65535');
  assert.equal(onlyError("a:0").message, 'port "0" is not in 1..65535');
  assert.equal(
    onlyError("a 99999999999999999999999").message,
    'port "99999999999999999999999" is not in 1..65535',
  );
  assert.equal(onlyError("a 12a").message, 'port "12a" is not a decimal number');
  assert.equal(onlyError("a +80").message, 'port "+80" is not a decimal number');
  assert.equal(onlyError("a 0x50").message, 'port "0x50" is not a decimal number');
  assert.equal(onlyError("a 8e3").message, 'port "8e3" is not a decimal number');
  assert.equal(onlyError("[::1]:-1").message, 'port "-1" is not a decimal number');
  assert.equal(onlyError("a:").message, 'missing port in "a:"');
  assert.equal(onlyError("a: 80").message, 'missing port in "a:"');
  assert.equal(onlyError("[::1]:").message, 'missing port in "[::1]:"');
});

Deno.test("shape errors", () => {
  const forms = 'expected "host port", "host:port" or "[v6addr]:port"';
  assert.equal(onlyError("example.com").message, forms);
  assert.equal(onlyError("[::1]").message, forms);
  assert.equal(onlyError(":80").message, 'missing host in ":80"');
  assert.equal(onlyError("[::1 80").message, 'missing "]" in "[::1"');
  assert.equal(onlyError("[::1]80").message, 'expected ":port" after "[::1]"');
});

Deno.test("extra tokens", () => {
  const extra = (t: string) => `unexpected extra text "${t}" after the port`;
  assert.equal(onlyError("a 1 2").message, extra("2"));
  assert.equal(onlyError("a:1 2 3").message, extra("2 3"));
  assert.equal(onlyError("[::1]:1 x").message, extra("x"));
  assert.equal(onlyError("[::1] 1 x").message, extra("x"));
  assert.equal(onlyError("::1 1 x").message, extra("x"));
});

Deno.test("unbracketed IPv6 without a separate port", () => {
  assert.equal(
    onlyError("::1:9000").message,
    '"::1:9000" is ambiguous: write IPv6 addresses as [addr]:port',
  );
  assert.equal(
    onlyError("fe80::abcd").message,
    'missing port after "fe80::abcd": write IPv6 addresses as [addr]:port',
  );
});

Deno.test("invalid IPv4 addresses", () => {
  for (const bad of ["1.2.3.256", "1.2.3", "1.2.3.4.5", "01.2.3.4", "1..2.3", "1.2.3.4.", "123"]) {
    assert.equal(onlyError(`${bad} 80`).message, `invalid IPv4 address "${bad}"`);
  }
  assert.equal(onlyError("1.2.3.256:80").message, 'invalid IPv4 address "1.2.3.256"');
});

Deno.test("invalid IPv6 addresses", () => {
  for (
    const bad of [
      "1::2::3",
      ":::",
      ":1::",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8::",
      "12345::",
      "g::1",
      "fe80::1%eth0",
      "1.2.3.4::",
      "::1.2.3.256",
      "::1.2.3.4:5",
    ]
  ) {
    assert.equal(onlyError(`[${bad}]:80`).message, `invalid IPv6 address "${bad}"`, bad);
  }
  assert.equal(onlyError("[]:80").message, 'brackets are only for IPv6 addresses: "[]"');
  assert.equal(
    onlyError("[1.2.3.4]:80").message,
    'brackets are only for IPv6 addresses: "[1.2.3.4]"',
  );
  assert.equal(onlyError("1::2::3 80").message, 'invalid IPv6 address "1::2::3"');
});

Deno.test("invalid hostnames", () => {
  for (const bad of ["-bad-", "a-.b", "a..b", ".a", "a.", "a_b", "exämple.com", "a]"]) {
    assert.equal(onlyError(`${bad} 80`).message, `invalid hostname "${bad}"`, bad);
  }
});

Deno.test("messages stay on one line even for control characters", () => {
  const message = onlyError("a\u000bb 80").message;
  assert.equal(message, 'invalid hostname "a\\u000bb"');
  assert.equal(onlyError("a 8\u20280").message, 'port "8\\u20280" is not a decimal number');
});

Deno.test("duplicates are warnings pointing at the first occurrence, and used once", () => {
  const text = [
    "example.com 80",
    "10.0.0.1:80",
    "EXAMPLE.com:80", // hostnames compare case-insensitively
    "example.com 81", // different port: not a duplicate
    "10.0.0.1 80",
    "[::1]:80",
    "0:0::1 80", // same IPv6 address, different spelling
    "[::1] 81",
    "::FFFF:10.0.0.1 80", // IPv4-mapped IPv6 is a different socket family
  ].join("\n");
  const result: ServerList = parseServerList(text);
  assert.deepEqual(result.errors, []);
  assert.deepEqual(result.warnings, [
    { line: 3, message: "duplicate of line 1 (EXAMPLE.com:80), ignored" },
    { line: 5, message: "duplicate of line 2 (10.0.0.1:80), ignored" },
    { line: 7, message: "duplicate of line 6 ([0:0::1]:80), ignored" },
  ]);
  assert.deepEqual(result.servers.map((s) => s.line), [1, 2, 4, 6, 8, 9]);
});

Deno.test("a bad line does not hide later lines or count as a first occurrence", () => {
  const result = parseServerList("a 0\na 1\na 1\n");
  assert.deepEqual(result.errors, [{ line: 1, message: 'port "0" is not in 1..65535' }]);
  assert.deepEqual(result.warnings, [{ line: 3, message: "duplicate of line 2 (a:1), ignored" }]);
  assert.deepEqual(result.servers.map((s) => s.line), [2]);
});

Deno.test("udp:// URLs are servers; other schemes are refused by name", () => {
  const r = parseServerList(
    "udp://127.0.0.1:9001\nUDP://[::1]:9002/\nudp://files.example.org:9000\n",
  );
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.servers.map((s) => [s.host, s.port, s.family]), [
    ["127.0.0.1", 9001, "ipv4"],
    ["::1", 9002, "ipv6"],
    ["files.example.org", 9000, "name"],
  ]);
  assert.deepEqual(parseServerList("http://example.org:80\n").errors, [{
    line: 1,
    message: '"http://" is not a udpget server: write "host port" or udp://host:port',
  }]);
});

Deno.test("formatServer", () => {
  assert.equal(formatServer("127.0.0.1", 9000), "127.0.0.1:9000");
  assert.equal(formatServer("::1", 9000), "[::1]:9000");
  assert.equal(formatServer("example.com", 9000), "example.com:9000");
  assert.equal(formatServer("::ffff:1.2.3.4", 1), "[::ffff:1.2.3.4]:1");
});

// ---- property tests -------------------------------------------------------

/** A valid entry plus the normalised identity the parser uses for duplicates. */
interface GenEntry {
  host: string;
  port: number;
  family: ServerSpec["family"];
  key: string;
}

const octet = fc.integer({ min: 0, max: 255 });

const ipv4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join("."));

/** Renders one 16-bit group in random case and with optional leading zeros. */
const hexGroup = (value: number) =>
  fc.tuple(fc.boolean(), fc.boolean()).map(([upper, pad]) => {
    const hex = pad ? value.toString(16).padStart(4, "0") : value.toString(16);
    return upper ? hex.toUpperCase() : hex;
  });

/** IPv6 addresses with optional "::" compression and optional dotted-quad tail. */
const ipv6: fc.Arbitrary<{ text: string; key: string }> = fc
  .record({
    groups: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }),
    v4Tail: fc.option(fc.tuple(octet, octet, octet, octet)),
    zeroStart: fc.integer({ min: 0, max: 8 }),
    zeroLen: fc.integer({ min: 0, max: 8 }),
  })
  .chain(({ groups, v4Tail, zeroStart, zeroLen }) => {
    const explicitEnd = v4Tail === null ? 8 : 6;
    const start = Math.min(zeroStart, explicitEnd);
    const end = Math.min(start + zeroLen, explicitEnd);
    // Groups hidden by "::" must be zero for the key to match.
    const full = groups.map((g, i) => (i >= start && i < end ? 0 : g));
    if (v4Tail !== null) {
      full.splice(6, 2, v4Tail[0] * 256 + v4Tail[1], v4Tail[2] * 256 + v4Tail[3]);
    }
    const key = full.join(":");
    const tail = v4Tail === null ? [] : [v4Tail.join(".")];
    return fc
      .tuple(...full.slice(0, explicitEnd).map(hexGroup))
      .map((hex) => {
        const parts = [...hex, ...tail];
        if (end === start) return { text: parts.join(":"), key };
        const explicitTailStart = end;
        const left = parts.slice(0, start).join(":");
        const right = parts.slice(explicitTailStart).join(":");
        return { text: `${left}::${right}`, key };
      });
  });

const label = fc
  .stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/)
  .chain((l) => fc.boolean().map((up) => (up ? l.toUpperCase() : l)));

const hostname = fc
  .array(label, { minLength: 1, maxLength: 4 })
  .map((labels) => labels.join("."))
  // All-numeric names are read as IPv4 addresses, so they are not valid names.
  .filter((h) => !/^[0-9.]+$/.test(h));

const port = fc.integer({ min: 1, max: 65535 });

const entry: fc.Arbitrary<GenEntry> = fc.oneof(
  fc.tuple(ipv4, port).map(([host, p]) => ({ host, port: p, family: "ipv4" as const, key: host })),
  fc.tuple(ipv6, port).map(([v6, p]) => ({
    host: v6.text,
    port: p,
    family: "ipv6" as const,
    key: v6.key,
  })),
  fc.tuple(hostname, port).map(([host, p]) => ({
    host,
    port: p,
    family: "name" as const,
    key: host.toLowerCase(),
  })),
);

const blanks = fc.stringMatching(/^[ \t]{0,3}$/);
const separator = fc.stringMatching(/^[ \t]{1,3}$/);
const commentText = fc.string({ maxLength: 12 }).map((s) => s.replace(/[\r\n]/g, ""));
const lineEnding = fc.constantFrom("\n", "\r\n", "\r");

/** Renders an entry in one of the forms accepted for its family. */
function renderEntry(e: GenEntry): fc.Arbitrary<string> {
  const forms = e.family === "ipv6"
    ? [`[${e.host}]:${e.port}`, `[${e.host}]SEP${e.port}`, `${e.host}SEP${e.port}`]
    : [`${e.host}:${e.port}`, `${e.host}SEP${e.port}`];
  return fc
    .tuple(fc.constantFrom(...forms), separator, blanks, blanks, fc.option(commentText))
    .map(([form, sep, before, after, comment]) =>
      before + form.replace("SEP", sep) + after + (comment === null ? "" : `#${comment}`)
    );
}

/** A line that the parser must skip: blank, whitespace-only or a comment. */
const filler = fc.oneof(
  fc.constant(""),
  blanks,
  fc.tuple(blanks, commentText).map(([b, c]) => `${b}#${c}`),
);

/** A file plus the servers the parser should find in it. */
const servers = fc
  .uniqueArray(entry, { maxLength: 12, selector: (e) => `${e.family} ${e.key} ${e.port}` })
  .chain((entries) =>
    fc.tuple(
      fc.constant(entries),
      fc.tuple(...entries.map(renderEntry)),
      fc.array(fc.array(filler, { maxLength: 2 }), {
        minLength: entries.length + 1,
        maxLength: entries.length + 1,
      }),
      fc.infiniteStream(lineEnding),
      fc.boolean(),
      fc.boolean(),
    )
  )
  .map(([entries, rendered, fillers, endings, finalNewline, bom]) => {
    const lines: string[] = [];
    const expected: ServerSpec[] = [];
    entries.forEach((e, i) => {
      lines.push(...fillers[i], rendered[i]);
      expected.push({ host: e.host, port: e.port, line: lines.length, family: e.family });
    });
    lines.push(...fillers[entries.length]);
    return { text: (bom ? "\uFEFF" : "") + joinLines(lines, endings, finalNewline), expected };
  });

/**
 * Joins lines with random endings. A lone CR followed by an empty line ending
 * in LF would read as one CRLF break, so that case reuses CR.
 */
function joinLines(lines: string[], endings: Iterable<string>, finalNewline: boolean): string {
  const it = endings[Symbol.iterator]();
  let out = "";
  let previous = "";
  lines.forEach((line, i) => {
    if (i > 0) out += previous;
    let ending: string = it.next().value;
    if (previous === "\r" && line === "" && ending.startsWith("\n")) ending = "\r";
    previous = ending;
    out += line;
  });
  return finalNewline && lines.length > 0 ? out + previous : out;
}

Deno.test("property: valid lists in random forms parse back exactly", () => {
  fc.assert(
    fc.property(servers, ({ text, expected }) => {
      assert.deepEqual(parseServerList(text), { servers: expected, errors: [], warnings: [] });
    }),
    { seed: 7, numRuns: 500 },
  );
});

Deno.test("property: formatServer output parses back to the same host and port", () => {
  fc.assert(
    fc.property(entry, (e) => {
      const { servers: parsed, errors } = parseServerList(formatServer(e.host, e.port));
      assert.deepEqual(errors, []);
      assert.deepEqual(parsed, [{ host: e.host, port: e.port, line: 1, family: e.family }]);
    }),
    { seed: 7, numRuns: 500 },
  );
});

/** Characters that exercise every branch of the parser when combined at random. */
const trickyChar = fc.constantFrom(
  ..."[]:.# \t\r\n\uFEFF\u000b-_aZf019".split(""),
  "\u2028",
  "\ud800",
);

Deno.test("property: never throws, and errors are well-formed", () => {
  const input = fc.oneof(
    fc.string({ unit: "binary", maxLength: 200 }),
    fc.string({ unit: trickyChar, maxLength: 200 }),
  );
  fc.assert(
    fc.property(input, (text) => {
      const result = parseServerList(text);
      const lineCount = text.split(/\r\n|\r|\n/).length;
      for (const e of result.errors) {
        assert.ok(e.line >= 1 && e.line <= lineCount);
        assert.ok(e.message.length > 0 && !/[\r\n\u2028\u2029]/.test(e.message), e.message);
      }
      for (const s of result.servers) {
        assert.ok(s.port >= 1 && s.port <= 65535);
        assert.ok(s.line >= 1 && s.line <= lineCount);
      }
    }),
    { seed: 7, numRuns: 1000 },
  );
});
