import assert from "node:assert/strict";
import { ExitCode, UdpgetError } from "../../lib/base/exit.ts";
import { DEFAULT_SOURCE_RATE, parseTrackerArgs } from "../../lib/cli/cli_args.ts";
import { HelpRequested } from "../../lib/cli/option_table.ts";

function usageError(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UdpgetError && e.exitCode === ExitCode.Usage, String(e));
    assert.match(e.message, re);
    assert.match(e.message, /\(see udpget tracker --help\)$/);
    return true;
  });
}

Deno.test("tracker args: defaults, every option, and the mistakes", () => {
  assert.deepEqual(parseTrackerArgs(["6969"]), {
    port: 6969,
    host: "0.0.0.0",
    whitelist: undefined,
    secretFile: undefined,
    sourceRate: DEFAULT_SOURCE_RATE,
    peersPerAddress: 32,
    io: "auto",
  });
  assert.deepEqual(
    parseTrackerArgs([
      "0",
      "--host",
      "::",
      "--whitelist",
      "w.txt",
      "--secret-file=k",
      "--source-rate",
      "0",
      "--peers-per-address",
      "0",
      "--io",
      "deno",
    ]),
    {
      port: 0,
      host: "::",
      whitelist: "w.txt",
      secretFile: "k",
      sourceRate: 0,
      peersPerAddress: 0,
      io: "deno",
    },
  );
  usageError(
    () => parseTrackerArgs(["1", "--peers-per-address", "many"]),
    /--peers-per-address must be a whole/,
  );
  usageError(() => parseTrackerArgs([]), /tracker: expects exactly one <port>/);
  usageError(() => parseTrackerArgs(["1", "2"]), /expects exactly one <port>/);
  usageError(() => parseTrackerArgs(["70000"]), /port must be in 0\.\.65535/);
  usageError(
    () => parseTrackerArgs(["1", "--source-rate", "-1"]),
    /--source-rate must be in 0\.\.\d+, got -1/,
  );
  usageError(
    () => parseTrackerArgs(["1", "--source-rate", "fast"]),
    /--source-rate must be a whole/,
  );
  usageError(() => parseTrackerArgs(["1", "--host", "tracker.example"]), /--host takes/);
  usageError(() => parseTrackerArgs(["1", "--whitelist", ""]), /--whitelist needs a file name/);
  usageError(() => parseTrackerArgs(["1", "--root", "/srv"]), /unknown option --root/);
  usageError(() => parseTrackerArgs(["1", "--io", "fast"]), /--io takes auto, ffi or deno/);
  assert.throws(() => parseTrackerArgs(["--help"]), (e) => e instanceof HelpRequested);
});
