/**
 * Declarative description of a subcommand's command line, and the parser driven by it.
 *
 * One table per subcommand (in `cli_args.ts`) is the single source of truth: it configures
 * node:util parseArgs and it is what `--help` prints, so an option cannot be accepted without
 * being documented or documented without being accepted.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ExitCode, UdpgetError } from "../base/exit.ts";

/** One `--long` / `-s` option of a subcommand. */
export interface OptionSpec {
  /** Long name without the dashes, e.g. `block-size`. */
  readonly long: string;
  /** One-letter alias without the dash, e.g. `o`. */
  readonly short?: string;
  /** `string` options take a value; `boolean` ones are flags and refuse `--flag=value`. */
  readonly type: "string" | "boolean";
  /** Placeholder for the value in help, e.g. `DIR`, `auto|N` (string options only). */
  readonly value?: string;
  /** One line: what the option does, with units. */
  readonly description: string;
  /** The default as the user would write or read it; omitted when there is none. */
  readonly default?: string;
}

/** One positional argument of a subcommand. */
export interface PositionalSpec {
  /** Name as shown in the synopsis, without brackets, e.g. `servers.txt`. */
  readonly name: string;
  /** Optional positionals are shown as `[<name>]`. */
  readonly optional?: boolean;
  /** One line: what it is, with units and bounds. */
  readonly description: string;
}

/** Everything `udpget <command> --help` shows and the parser accepts. */
export interface CommandSpec {
  /** Subcommand name: `serve`, `fetch` or `tracker`. */
  readonly name: string;
  /** One line: what the subcommand does. */
  readonly summary: string;
  /** Positionals in order. */
  readonly positionals: readonly PositionalSpec[];
  /** Options in the order help lists them. */
  readonly options: readonly OptionSpec[];
  /** Extra lines printed after the options (value syntaxes shared by several options). */
  readonly notes?: readonly string[];
}

/** `-h`, `--help`: part of every subcommand's table so that help lists it too. */
export const HELP_OPTION: OptionSpec = {
  long: "help",
  short: "h",
  type: "boolean",
  description: "print this help on stdout and exit 0",
};

/** Thrown by {@linkcode parseCommand} when `-h`/`--help` is among the arguments. */
export class HelpRequested extends Error {
  /** The subcommand whose help was asked for. */
  readonly command: string;

  /** Creates the request for `command`'s help. */
  constructor(command: string) {
    super(`help for ${command}`);
    this.name = "HelpRequested";
    this.command = command;
  }
}

/** What {@linkcode parseCommand} found: option values by long name, and the positionals. */
export interface ParsedCommand {
  /** Long name → value (`true` for flags); options not given are absent. */
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  /** Positional arguments in order (everything after `--` included). */
  readonly positionals: readonly string[];
}

/** A usage error of `command`, pointing at that subcommand's help. */
export function usageError(command: string, message: string): UdpgetError {
  return new UdpgetError(ExitCode.Usage, `${command}: ${message} (see udpget ${command} --help)`);
}

/**
 * Parses `args` against `spec`.
 *
 * parseArgs runs non-strict with tokens, and the tokens are checked here, because strict mode's
 * messages are multi-line, name Node's API ("To specify a positional argument starting with a
 * '-'...") and cannot say which subcommand's help to read. `--help` wins over any other
 * mistake: someone who asks for help should get it, not an error about the line they are fixing.
 *
 * @throws {HelpRequested} when `-h` or `--help` is given.
 * @throws {UdpgetError} (exit 2) for an unknown option, a missing or unexpected value.
 */
export function parseCommand(spec: CommandSpec, args: string[]): ParsedCommand {
  const byLong = new Map(spec.options.map((o) => [o.long, o]));
  const options = Object.fromEntries(
    spec.options.map((
      o,
    ) => [o.long, o.short ? { type: o.type, short: o.short } : { type: o.type }]),
  );
  const { values, positionals, tokens } = parseArgs({
    args,
    options,
    allowPositionals: true,
    strict: false,
    tokens: true,
  });
  const optionTokens = tokens.filter((t) => t.kind === "option");
  if (optionTokens.some((t) => t.name === HELP_OPTION.long)) throw new HelpRequested(spec.name);
  for (const t of optionTokens) {
    const o = byLong.get(t.name);
    if (o === undefined) throw usageError(spec.name, `unknown option ${t.rawName}`);
    if (o.type === "boolean" && t.value !== undefined) {
      throw usageError(spec.name, `option ${t.rawName} takes no value`);
    }
    if (o.type === "string") {
      if (t.value === undefined) {
        throw usageError(spec.name, `option ${t.rawName} needs a value (${o.value})`);
      }
      // parseArgs takes the next word as the value even when it looks like an option, so
      // `-o --force` would write to a file named "--force": almost certainly a forgotten value.
      // A negative number is a value, though: the option's own check says why it is refused.
      const negative = /^-\d/.test(t.value);
      if (!t.inlineValue && t.value.startsWith("-") && t.value !== "-" && !negative) {
        throw usageError(
          spec.name,
          `option ${t.rawName} needs a value (${o.value}), got option-like ${t.value}; ` +
            `write --${o.long}=${t.value} if that is meant`,
        );
      }
    }
  }
  return { values, positionals };
}
