/**
 * The `--help` texts, rendered from the option tables and the exit-code table so that help
 * cannot disagree with what the parser accepts or the codes the program returns.
 *
 * @module
 */

import { EXIT_CODE_DESCRIPTIONS, ExitCode } from "../base/exit.ts";
import type { CommandSpec, OptionSpec } from "./option_table.ts";

/** `udpget fetch <servers.txt> <connections> [<file>] [options]` */
export function synopsis(spec: CommandSpec): string {
  const args = spec.positionals.map((p) => p.optional ? `[<${p.name}>]` : `<${p.name}>`);
  return ["udpget", spec.name, ...args, "[options]"].join(" ");
}

/** `-o, --output FILE` / `    --force`: the left column of an option's help line. */
function optionLabel(o: OptionSpec): string {
  const long = `--${o.long}${o.type === "string" ? ` ${o.value ?? "VALUE"}` : ""}`;
  return o.short ? `-${o.short}, ${long}` : `    ${long}`;
}

/** Help lines are wrapped to fit this many columns (a terminal of 100, as the README). */
const WIDTH = 100;

/** Splits `text` into lines of at most `width` characters, at spaces. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  return [...lines, line];
}

/**
 * Two-column lines, the left column padded to the widest entry; a long right column wraps
 * under itself. A left entry too wide to leave room puts its text on the next line.
 */
function table(rows: readonly (readonly [string, string])[]): string[] {
  const width = Math.min(Math.max(...rows.map(([left]) => left.length)), 32);
  const indent = " ".repeat(width + 4);
  const out: string[] = [];
  for (const [left, right] of rows) {
    const text = wrap(right, WIDTH - indent.length);
    if (left.length > width) out.push(`  ${left}`, ...text.map((l) => indent + l));
    else out.push(`  ${left.padEnd(width)}  ${text[0]}`, ...text.slice(1).map((l) => indent + l));
  }
  return out;
}

/** The exit-code table, one line per code, from {@linkcode EXIT_CODE_DESCRIPTIONS}. */
export function exitCodeHelp(): string[] {
  const names = Object.keys(ExitCode) as (keyof typeof ExitCode)[];
  return [
    "exit codes:",
    ...names.map((n) => `  ${String(ExitCode[n]).padStart(3)}  ${EXIT_CODE_DESCRIPTIONS[n]}`),
  ];
}

/** The arguments and options sections of one subcommand. */
function commandSections(spec: CommandSpec): string[] {
  const lines = ["arguments:"];
  lines.push(...table(spec.positionals.map((p) => [`<${p.name}>`, p.description])));
  lines.push("", "options:");
  lines.push(
    ...table(spec.options.map((o) => [
      optionLabel(o),
      o.default === undefined ? o.description : `${o.description} (default: ${o.default})`,
    ])),
  );
  if (spec.notes?.length) lines.push("", ...spec.notes.flatMap((n) => wrap(n, WIDTH)));
  return lines;
}

/** What `udpget <command> --help` prints. */
export function commandHelp(spec: CommandSpec): string {
  return [
    `usage: ${synopsis(spec)}`,
    "",
    spec.summary,
    "",
    ...commandSections(spec),
    "",
    ...exitCodeHelp(),
  ].join("\n");
}

/** The short usage printed after `udpget` with no command. */
export function shortUsage(specs: readonly CommandSpec[]): string {
  return [
    "usage:",
    ...specs.map((s) => `  ${synopsis(s)}`),
    "  udpget help [<command>] | --help | --version",
    `  udpget <command> --help  (${specs.map((s) => s.name).join(", ")}) for its options`,
  ].join("\n");
}

/** What `udpget --help` prints: every subcommand's arguments and options, and the exit codes. */
export function mainHelp(specs: readonly CommandSpec[]): string {
  const lines = [
    "udpget: fetch one file from several UDP servers at once, verified",
    "",
    "usage:",
    ...table([
      ...specs.map((s): [string, string] => [synopsis(s), s.summary]),
      ["udpget help [<command>]", "this help, or one command's"],
      ["udpget -V, --version", "print the version"],
    ]),
  ];
  for (const s of specs) lines.push("", `--- udpget ${s.name} ---`, ...commandSections(s));
  lines.push("", ...exitCodeHelp());
  return lines.join("\n");
}
