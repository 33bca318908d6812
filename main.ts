/**
 * `udpget`: one entry point for `serve`, `fetch`, `tracker` and `swarm-id`.
 *
 * @module
 */

import { runFetch } from "./client.ts";
import { runServe } from "./server.ts";
import { runSwarmId } from "./swarm_id.ts";
import { runTracker } from "./tracker.ts";
import { ExitCode, UdpgetError } from "./lib/base/exit.ts";
import { COMMANDS, USAGE } from "./lib/cli/cli_args.ts";
import { commandHelp, mainHelp } from "./lib/cli/help.ts";
import { HelpRequested } from "./lib/cli/option_table.ts";

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
      case "swarm-id":
        return await runSwarmId(rest);
      case "tracker":
        return await runTracker(rest);
      case "--version":
      case "-V":
        console.log(`udpget ${VERSION}`);
        return ExitCode.Ok;
      case "--help":
      case "-h":
      case "help":
        console.log(helpText(rest[0]));
        return ExitCode.Ok;
      default:
        throw new UdpgetError(
          ExitCode.Usage,
          command === undefined ? "missing command" : `unknown command "${command}"`,
        );
    }
  } catch (e) {
    if (e instanceof HelpRequested) {
      console.log(helpText(e.command));
      return ExitCode.Ok;
    }
    if (e instanceof UdpgetError) {
      console.error(`udpget: ${e.message}`);
      if (e.exitCode === ExitCode.Usage && command === undefined) console.error(USAGE);
      return e.exitCode;
    }
    console.error(`udpget: internal error: ${e instanceof Error ? e.stack : String(e)}`);
    return ExitCode.Internal;
  }
}

/** `udpget help [<command>]`: the whole help, or one subcommand's; a usage error otherwise. */
function helpText(command: string | undefined): string {
  if (command === undefined) return mainHelp(COMMANDS);
  const spec = COMMANDS.find((c) => c.name === command);
  if (spec === undefined) {
    throw new UdpgetError(
      ExitCode.Usage,
      `help: unknown command "${command}" (commands: ${COMMANDS.map((c) => c.name).join(", ")})`,
    );
  }
  return commandHelp(spec);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
