/**
 * Exit codes of the `udpget` command and the error type that carries one.
 *
 * Every failure the user can cause or meet ends as one `UdpgetError` whose message is printed
 * as a single line on stderr and whose code is the process exit status.
 *
 * @module
 */

/** Documented exit statuses (see README "Exit codes"). */
export const ExitCode = {
  /** The file was fetched and verified, or the server shut down cleanly. */
  Ok: 0,
  /** An unexpected internal error (a bug: please report it). */
  Internal: 1,
  /** Bad command line, bad servers file. */
  Usage: 2,
  /** Every server that answered said the file does not exist (or may not be served). */
  NotFound: 3,
  /** No server answered, or every server failed before the transfer finished. */
  Unreachable: 4,
  /** The bytes received do not match the digest the servers agreed on. */
  Verification: 5,
  /** A local file could not be read or written (output directory, disk full...). */
  LocalIo: 6,
  /** The output file (or a `.part` udpget did not make) exists and `--force` was not given. */
  OutputExists: 7,
  /** Servers refused our authentication (`--secret-file` missing, wrong key, clock skew). */
  AuthFailed: 8,
  /** Interrupted by SIGINT/SIGTERM. */
  Interrupted: 130,
} as const;

/** One of the values of {@linkcode ExitCode}. */
export type ExitCodeValue = typeof ExitCode[keyof typeof ExitCode];

/**
 * One line per exit status, in the order `--help` and the README list them. Kept beside
 * {@linkcode ExitCode} so the help text cannot drift from the codes the program returns; the
 * `Record` type makes a new code without a description a type error.
 */
export const EXIT_CODE_DESCRIPTIONS: Readonly<Record<keyof typeof ExitCode, string>> = {
  Ok: "success",
  Internal: "internal error (a bug)",
  Usage: "usage error: bad arguments or a bad servers file",
  NotFound: "the file is not available from any server that answered",
  Unreachable: "no server reachable, or every server failed before the transfer finished",
  Verification: "verification failed, or servers disagree on the file with no majority",
  LocalIo: "local I/O error (cannot write the output, output is a directory, ...)",
  OutputExists: "OUT (or an OUT.part udpget did not make) exists; --force not given",
  AuthFailed: "authentication refused: --secret-file missing, wrong key, clock skew",
  Interrupted: "interrupted (SIGINT/SIGTERM)",
};

/** An error meant for the user: a one-line message and the exit status to end with. */
export class UdpgetError extends Error {
  /** The process exit status this error maps to. */
  readonly exitCode: ExitCodeValue;

  /** Creates an error with a one-line `message` that ends the process with `exitCode`. */
  constructor(exitCode: ExitCodeValue, message: string) {
    super(message);
    this.name = "UdpgetError";
    this.exitCode = exitCode;
  }
}

/**
 * The cause of a failed system call as a user should read it: the system's message without the
 * runtime's decoration, e.g. "No space left on device" for Deno's "No space left on device (os
 * error 28): write '/x'" (the caller names the path itself, once).
 */
export function ioMessage(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split("\n")[0].split(" (os error ")[0];
}
