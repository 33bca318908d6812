import assert from "node:assert/strict";
import {
  COMMANDS,
  FETCH_SPEC,
  MAX_CONNECTIONS,
  parseFetchArgs,
  parseIntArg,
  parseServeArgs,
  SERVE_SPEC,
  USAGE,
} from "../../lib/cli/cli_args.ts";
import { EXIT_CODE_DESCRIPTIONS, ExitCode, UdpgetError } from "../../lib/base/exit.ts";
import { commandHelp, mainHelp } from "../../lib/cli/help.ts";
import { HelpRequested } from "../../lib/cli/option_table.ts";
import { MAX_BLOCK_SIZE } from "../../lib/wire/packet.ts";

/** Asserts that `fn` throws a usage error (exit code 2) whose message matches `re`. */
function usageError(fn: () => unknown, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UdpgetError, `not a UdpgetError: ${e}`);
    assert.equal(e.exitCode, ExitCode.Usage);
    assert.equal(e.exitCode, 2);
    assert.ok(!e.message.includes("\n"), `multi-line message: ${JSON.stringify(e.message)}`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// fetch
// ---------------------------------------------------------------------------------------------

Deno.test("fetch: defaults", () => {
  assert.deepEqual(parseFetchArgs(["servers.txt", "4", "movie.mkv"]), {
    serversFile: "servers.txt",
    connections: 4,
    file: "movie.mkv",
    output: undefined,
    force: false,
    quiet: false,
    json: false,
    blockSize: "auto",
    limit: undefined,
    verify: "pieces",
    checksum: undefined,
    secretFile: undefined,
    io: "auto",
    swarm: undefined,
  });
});

Deno.test("fetch: --tracker and its companions; a companion alone is a usage error", () => {
  const a = parseFetchArgs([
    "s",
    "2",
    "f",
    "--tracker",
    "[::1]:6969",
    "--share-port",
    "7000",
    "--share-rate",
    "8M",
    "--seed-time",
    "0",
  ]);
  assert.deepEqual(a.swarm, {
    tracker: a.swarm?.tracker,
    sharePort: 7000,
    host: undefined,
    shareRate: 8_000_000,
    seedTime: 0,
  });
  assert.equal(a.swarm?.tracker.host, "::1");
  assert.equal(a.swarm?.tracker.port, 6969);
  assert.equal(parseFetchArgs(["s", "2", "f", "--tracker", "t:1"]).swarm?.seedTime, 30);
  usageError(
    () => parseFetchArgs(["s", "2", "f", "--seed-time", "5"]),
    /--seed-time needs --tracker/,
  );
  usageError(
    () => parseFetchArgs(["s", "2", "f", "--tracker", "nope"]),
    /--tracker takes HOST:PORT/,
  );
  usageError(
    () => parseFetchArgs(["s", "2", "f", "--tracker", "t:1", "--share-port", "70000"]),
    /--share-port/,
  );
});

Deno.test("--io on both sides: auto, ffi or deno; anything else is a usage error", () => {
  assert.equal(parseFetchArgs(["s", "2", "f", "--io", "deno"]).io, "deno");
  assert.equal(parseServeArgs(["9000", "--io", "ffi"]).io, "ffi");
  usageError(() => parseFetchArgs(["s", "2", "f", "--io", "fast"]), /--io takes auto, ffi or deno/);
  usageError(() => parseServeArgs(["9000", "--io"]), /needs a value/);
  // one UDP port cannot carry both: a usage error before anything is bound
  usageError(
    () => parseServeArgs(["69", "--tftp", "69"]),
    /--tftp 69 is the port udpget serves on/,
  );
  assert.equal(parseServeArgs(["0", "--tftp", "0"]).tftp, 0, "two ephemeral ports are two ports");
});

Deno.test("--secret-file on both sides; an empty name is a usage error", () => {
  assert.equal(parseFetchArgs(["s", "2", "f", "--secret-file", "k"]).secretFile, "k");
  assert.equal(parseServeArgs(["9000", "--secret-file", "k"]).secretFile, "k");
  usageError(() => parseFetchArgs(["s", "2", "f", "--secret-file", ""]), /needs a file name/);
  usageError(() => parseServeArgs(["9000", "--secret-file"]));
});

Deno.test("fetch: --limit and serve --rate take rates with suffixes", () => {
  assert.equal(parseFetchArgs(["s", "2", "f", "--limit", "20M"]).limit, 20_000_000);
  assert.equal(parseFetchArgs(["s", "2", "f", "--block-size", "auto"]).blockSize, "auto");
  assert.equal(parseServeArgs(["9000", "--rate", "500k"]).rate, 500_000);
  assert.equal(parseServeArgs(["9000", "--rate", "4Mi"]).rate, 4 << 20);
  assert.equal(parseServeArgs(["9000"]).rate, undefined);
  for (const bad of ["fast", "0", "-5M", "5X"]) {
    assert.throws(() => parseServeArgs(["9000", "--rate", bad]), UdpgetError);
  }
});

Deno.test("fetch: the file may be left out (asked for later)", () => {
  const a = parseFetchArgs(["servers.txt", "1"]);
  assert.equal(a.file, undefined);
  assert.equal(a.serversFile, "servers.txt");
  assert.equal(a.connections, 1);
});

Deno.test("fetch: -o and --output", () => {
  assert.equal(parseFetchArgs(["s", "2", "f", "-o", "out.bin"]).output, "out.bin");
  assert.equal(parseFetchArgs(["s", "2", "f", "--output", "dir/out.bin"]).output, "dir/out.bin");
  assert.equal(parseFetchArgs(["s", "2", "f", "--output=x"]).output, "x");
  assert.equal(parseFetchArgs(["-o", "first", "s", "2", "f"]).output, "first");
  usageError(() => parseFetchArgs(["s", "2", "f", "-o", ""]), /-o/);
  usageError(() => parseFetchArgs(["s", "2", "f", "-o"]));
});

Deno.test("fetch: --force / -f and --quiet / -q", () => {
  const long = parseFetchArgs(["s", "2", "f", "--force", "--quiet"]);
  assert.equal(long.force, true);
  assert.equal(long.quiet, true);
  const short = parseFetchArgs(["-f", "s", "2", "-q", "f"]);
  assert.equal(short.force, true);
  assert.equal(short.quiet, true);
  const one = parseFetchArgs(["s", "2", "f", "--quiet"]);
  assert.deepEqual([one.force, one.quiet], [false, true]);
  usageError(() => parseFetchArgs(["s", "2", "f", "--force=yes"]));
});

Deno.test("fetch: --json; with -o - both would write stdout: a usage error", () => {
  assert.equal(parseFetchArgs(["s", "2", "f", "--json"]).json, true);
  assert.equal(parseFetchArgs(["s", "2", "f", "-o", "-"]).output, "-");
  usageError(() => parseFetchArgs(["s", "2", "f", "--json", "-o", "-"]), /stdout/);
});

Deno.test("fetch: --block-size bounds are 512 and MAX_BLOCK_SIZE", () => {
  const bs = (v: string) => parseFetchArgs(["s", "2", "f", "--block-size", v]).blockSize;
  assert.equal(bs("512"), 512);
  assert.equal(bs("1400"), 1400);
  assert.equal(bs(String(MAX_BLOCK_SIZE)), MAX_BLOCK_SIZE);
  usageError(() => bs("511"), /--block-size/);
  usageError(() => bs("0"), /--block-size/);
  usageError(() => bs(String(MAX_BLOCK_SIZE + 1)), /--block-size/);
  usageError(() => bs("1e3"), /--block-size/);
  usageError(() => bs("abc"), /--block-size/);
  usageError(() => bs(""), /--block-size/);
  usageError(() => parseFetchArgs(["s", "2", "f", "--block-size"]));
});

Deno.test("fetch: connections must be a whole number in 1..64", () => {
  assert.equal(MAX_CONNECTIONS, 64);
  assert.equal(parseFetchArgs(["s", "1", "f"]).connections, 1);
  assert.equal(parseFetchArgs(["s", "64", "f"]).connections, 64);
  for (const bad of ["0", "65", "abc", "1.5", "+3", " 3", "3x", "", "99999999999999999999"]) {
    usageError(() => parseFetchArgs(["s", bad, "f"]), /connections/);
  }
  usageError(() => parseFetchArgs(["s", "-1", "f"])); // an unknown option to parseArgs
});

Deno.test("fetch: unknown flags are rejected", () => {
  usageError(() => parseFetchArgs(["s", "2", "f", "--bogus"]));
  usageError(() => parseFetchArgs(["s", "2", "f", "-z"]));
  usageError(() => parseFetchArgs(["--root", "x", "s", "2", "f"]), /root/);
});

Deno.test("fetch: too many or too few positionals are rejected", () => {
  usageError(
    () => parseFetchArgs(["s", "2", "f", "extra"]),
    /^fetch: expects <servers.txt> <connections> \[<file>\]/,
  );
  usageError(() => parseFetchArgs(["s"]), /^fetch: expects <servers.txt> <connections> \[<file>\]/);
  usageError(() => parseFetchArgs([]), /^fetch: expects <servers.txt> <connections> \[<file>\]/);
  usageError(() => parseFetchArgs(["s", "2", ""]), /file/);
});

Deno.test("fetch: everything after -- is positional", () => {
  const a = parseFetchArgs(["s", "2", "--", "--weird-name"]);
  assert.equal(a.file, "--weird-name");
});

Deno.test("usage errors name the subcommand and point at its --help", () => {
  usageError(() => parseFetchArgs([]), /^fetch: .* \(see udpget fetch --help\)$/);
  usageError(() => parseServeArgs([]), /^serve: .* \(see udpget serve --help\)$/);
  assert.match(USAGE, /udpget serve/);
  assert.match(USAGE, /udpget fetch/);
});

// ---------------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------------

Deno.test("serve: defaults", () => {
  assert.deepEqual(parseServeArgs(["9000"]), {
    port: 9000,
    root: ".",
    host: "0.0.0.0",
    pieceSize: undefined,
    rate: undefined,
    secretFile: undefined,
    tftp: undefined,
    logFormat: "text",
    cacheDir: undefined,
    noCache: false,
    io: "auto",
    tracker: undefined,
  });
  assert.equal(parseServeArgs(["9000", "--tracker", "t.lan:6969"]).tracker?.port, 6969);
});

Deno.test("serve: --root, --host, --piece-size", () => {
  assert.deepEqual(
    parseServeArgs(["--root", "/srv", "--host", "::", "--piece-size", "65536", "0"]),
    {
      port: 0,
      root: "/srv",
      host: "::",
      pieceSize: 65536,
      rate: undefined,
      secretFile: undefined,
      tftp: undefined,
      logFormat: "text",
      cacheDir: undefined,
      noCache: false,
      io: "auto",
      tracker: undefined,
    },
  );
  assert.equal(parseServeArgs(["1", "--piece-size", "1024"]).pieceSize, 1024);
  assert.equal(parseServeArgs(["1", "--piece-size", String(1 << 26)]).pieceSize, 1 << 26);
  usageError(() => parseServeArgs(["1", "--piece-size", "1023"]), /--piece-size/);
  usageError(() => parseServeArgs(["1", "--piece-size", String((1 << 26) + 1)]), /--piece-size/);
});

Deno.test("serve: --log-format, --cache-dir, --no-cache", () => {
  assert.equal(parseServeArgs(["1", "--log-format", "json"]).logFormat, "json");
  assert.equal(parseServeArgs(["1", "--log-format", "text"]).logFormat, "text");
  usageError(() => parseServeArgs(["1", "--log-format", "xml"]), /--log-format/);
  assert.equal(parseServeArgs(["1", "--cache-dir", "/var/cache/u"]).cacheDir, "/var/cache/u");
  usageError(() => parseServeArgs(["1", "--cache-dir", ""]), /needs a file name/);
  assert.equal(parseServeArgs(["1", "--no-cache"]).noCache, true);
  usageError(() => parseServeArgs(["1", "--no-cache", "--cache-dir", "d"]), /contradict/);
});

Deno.test("serve: port must be 0..65535 and exactly one", () => {
  assert.equal(parseServeArgs(["65535"]).port, 65535);
  usageError(() => parseServeArgs(["65536"]), /port/);
  usageError(() => parseServeArgs(["http"]), /port/);
  usageError(() => parseServeArgs([]), /exactly one/);
  usageError(() => parseServeArgs(["1", "2"]), /exactly one/);
  usageError(() => parseServeArgs(["1", "--force"]));
});

Deno.test("serve: --tftp PORT, not with --secret-file (TFTP has no authentication)", () => {
  assert.equal(parseServeArgs(["9000", "--tftp", "69"]).tftp, 69);
  assert.equal(parseServeArgs(["9000", "--tftp", "0"]).tftp, 0);
  usageError(() => parseServeArgs(["9000", "--tftp", "65536"]), /--tftp port/);
  usageError(() => parseServeArgs(["9000", "--tftp", "tftp"]), /--tftp port/);
  usageError(() => parseServeArgs(["9000", "--tftp"]));
  usageError(
    () => parseServeArgs(["9000", "--tftp", "69", "--secret-file", "k"]),
    /no authentication/,
  );
});

Deno.test("parseIntArg: digits only, inclusive bounds", () => {
  assert.equal(parseIntArg("7", "x", 7, 7, "fetch"), 7);
  assert.equal(parseIntArg("007", "x", 0, 10, "fetch"), 7);
  usageError(() => parseIntArg("8", "x", 0, 7, "fetch"), /x must be in 0\.\.7, got 8/);
  usageError(() => parseIntArg("-1", "x", 0, 7, "fetch"), /x must be in 0\.\.7, got -1/);
  usageError(() => parseIntArg("1.5", "x", 0, 7, "fetch"), /x must be a whole number/);
  usageError(() => parseIntArg("0x10", "x", 0, 100, "fetch"), /whole number/);
});

// ---------------------------------------------------------------------------------------------
// the option tables: errors, help, options parsed for features added elsewhere
// ---------------------------------------------------------------------------------------------

Deno.test("unknown options and missing values are one clean line naming the option", () => {
  usageError(
    () => parseFetchArgs(["s", "2", "f", "--bogus"]),
    /^fetch: unknown option --bogus \(see udpget fetch --help\)$/,
  );
  usageError(() => parseFetchArgs(["s", "2", "f", "-z"]), /^fetch: unknown option -z /);
  usageError(() => parseServeArgs(["1", "--bogus=3"]), /^serve: unknown option --bogus /);
  usageError(
    () => parseFetchArgs(["s", "2", "f", "--limit"]),
    /^fetch: option --limit needs a value/,
  );
  usageError(
    () => parseFetchArgs(["s", "2", "-o", "--force"]),
    /option -o needs a value .*--force/,
  );
  usageError(() => parseFetchArgs(["s", "2", "f", "--quiet=1"]), /option --quiet takes no value/);
  // a negative number is a value, refused by the option's own range (not "option-like")
  usageError(
    () => parseFetchArgs(["s", "2", "f", "--tracker", "h:1", "--seed-time", "-1"]),
    /^fetch: --seed-time must be in 0\.\.\d+, got -1 /,
  );
  // what Node's parser says, which must not leak out
  for (const args of [["s", "2", "--bogus"], ["s", "2", "--limit"], ["s", "2", "f", "-q=1"]]) {
    assert.throws(() => parseFetchArgs(args), (e: Error) => !/positional|'/.test(e.message));
  }
  // the value may start with a dash when attached
  assert.equal(parseFetchArgs(["s", "2", "f", "--output=-x"]).output, "-x");
});

Deno.test("-h / --help anywhere asks for that subcommand's help, even after a mistake", () => {
  for (const [parse, name] of [[parseFetchArgs, "fetch"], [parseServeArgs, "serve"]] as const) {
    for (const args of [["--help"], ["-h"], ["1", "--bogus", "--help"], ["-qh"]]) {
      if (name === "serve" && args[0] === "-qh") continue;
      assert.throws(
        () => parse(args),
        (e: unknown) => e instanceof HelpRequested && e.command === name,
        `${name} ${args.join(" ")}`,
      );
    }
  }
  // after -- it is a file name
  assert.equal(parseFetchArgs(["s", "2", "--", "--help"]).file, "--help");
});

Deno.test("help lists every option with its short form, default and the exit codes", () => {
  for (const spec of COMMANDS) {
    const text = commandHelp(spec);
    assert.match(text, new RegExp(`^usage: udpget ${spec.name} `));
    for (const o of spec.options) {
      assert.ok(text.includes(`--${o.long}`), `--${o.long} missing from ${spec.name} help`);
      if (o.short) assert.ok(text.includes(`-${o.short}, --${o.long}`), `-${o.short}`);
      // wrapped lines joined, so a default split over two lines still counts
      const flat = text.replace(/\n +/g, " ");
      if (o.default) assert.ok(flat.includes(`(default: ${o.default})`), o.long);
    }
    const lines = text.split("\n").map((l) => l.trim());
    for (const [name, code] of Object.entries(ExitCode)) {
      const want = `${code}  ${EXIT_CODE_DESCRIPTIONS[name as keyof typeof ExitCode]}`;
      assert.ok(lines.includes(want), `exit code line "${want}" missing`);
    }
    assert.ok(text.split("\n").every((l) => l.length <= 100), "help fits 100 columns");
  }
  const all = mainHelp(COMMANDS);
  for (const spec of COMMANDS) for (const o of spec.options) assert.ok(all.includes(`--${o.long}`));
  assert.match(all, /^ +130 {2}interrupted/m);
  assert.match(commandHelp(FETCH_SPEC), /-o, --output OUT/);
  assert.match(commandHelp(SERVE_SPEC), /--log-format text\|json/);
});

Deno.test("--json, --log-format, --cache-dir, --no-cache", () => {
  assert.equal(parseFetchArgs(["s", "2", "f", "--json"]).json, true);
  const s = parseServeArgs(["0", "--log-format", "json", "--cache-dir", "/tmp/c"]);
  assert.deepEqual([s.logFormat, s.cacheDir, s.noCache], ["json", "/tmp/c", false]);
  assert.equal(parseServeArgs(["0", "--no-cache"]).noCache, true);
  usageError(() => parseServeArgs(["0", "--cache-dir", "/c", "--no-cache"]), /contradict/);
  assert.equal(parseServeArgs(["0", "--log-format=text"]).logFormat, "text");
  usageError(() => parseServeArgs(["0", "--log-format", "xml"]), /--log-format takes/);
  usageError(() => parseServeArgs(["0", "--cache-dir", ""]), /--cache-dir needs a file name/);
  usageError(() => parseServeArgs(["0", "--no-cache=yes"]), /takes no value/);
});

Deno.test("serve --host: an IPv4 or IPv6 literal or localhost, anything else is exit 2", () => {
  for (
    const ok of ["0.0.0.0", "127.0.0.1", "::", "::1", "fd00::7", "localhost", "::ffff:1.2.3.4"]
  ) {
    assert.equal(parseServeArgs(["0", "--host", ok]).host, ok);
  }
  for (const bad of ["1.2.3", "300.1.1.1", "nope", "[::1]", ":::", "example.com", ""]) {
    usageError(() => parseServeArgs(["0", "--host", bad]), /^serve: --host takes an IPv4 or IPv6/);
  }
});
