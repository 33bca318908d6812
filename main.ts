/**
 * `udpget`: one entry point for `serve` and `fetch`.
 *
 * @module
 */

import { runFetch } from "./client.ts";
import { runServe } from "./server.ts";
import { ExitCode, UdpgetError } from "./lib/cli/exit.ts";
import { USAGE } from "./lib/cli/cli_args.ts";

/** Version printed by `--version`. */
export const VERSION = "0.1.0";

/** Runs the command line `args` and resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "serve":
        return await runServe(rest);
      case "fetch":
        return await runFetch(rest);
      case "--version":
      case "-V":
        console.log(`udpget ${VERSION}`);
        return ExitCode.Ok;
      case "--help":
      case "-h":
      case "help":
        console.log(USAGE);
        return ExitCode.Ok;
      default:
        throw new UdpgetError(
          ExitCode.Usage,
          command === undefined ? "missing command" : `unknown command "${command}"`,
        );
    }
  } catch (e) {
    if (e instanceof UdpgetError) {
      console.error(`udpget: ${e.message}`);
      if (e.exitCode === ExitCode.Usage && command === undefined) console.error(USAGE);
      return e.exitCode;
    }
    console.error(`udpget: internal error: ${e instanceof Error ? e.stack : String(e)}`);
    return ExitCode.Internal;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
