/**
 * What the benches need of other tools' runs: the telling line of a failed one's output, and a
 * file's SHA-256 by `sha256sum` (as a user would check it, outside udpget's own code).
 *
 * @module
 */

/**
 * The telling line of a failed tool's output: the first that says "error" (Deno's own errors
 * end in a stack backtrace), else the last; without colour codes.
 */
export function gist(text: string): string {
  // deno-lint-ignore no-control-regex
  const plain = text.replace(/\x1b\[[0-9;]*m/g, "");
  const lines = plain.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  return lines.find((l) => /error/i.test(l)) ?? lines.at(-1) ?? "";
}

/** The SHA-256 of the file at `path` (hex) by `sha256sum`, or undefined if it failed. */
export async function sha256sum(path: string): Promise<string | undefined> {
  const out = await new Deno.Command("sha256sum", { args: [path], stdout: "piped", stderr: "null" })
    .output();
  return out.code === 0 ? new TextDecoder().decode(out.stdout).split(" ")[0] : undefined;
}
