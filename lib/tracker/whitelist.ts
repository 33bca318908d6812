/**
 * The `tracker --whitelist FILE` format, as opentracker's `-w`: one info-hash per line, 40 hex
 * digits (either case). Blank lines and lines starting with `#` are skipped, as is whitespace
 * around a hash; anything else is a mistake reported with its line number rather than a hash
 * silently missing from the list.
 *
 * @module
 */

/** What {@linkcode parseWhitelist} found. */
export type WhitelistResult =
  | { readonly ok: true; readonly hashes: ReadonlySet<string> }
  | { readonly ok: false; readonly line: number; readonly message: string };

/** The info-hashes of a whitelist file's text, as lowercase hex; or its first bad line. */
export function parseWhitelist(text: string): WhitelistResult {
  const hashes = new Set<string>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!/^[0-9a-fA-F]{40}$/.test(line)) {
      const shown = line.length > 50 ? `${line.slice(0, 50)}...` : line;
      return {
        ok: false,
        line: i + 1,
        message: `expected an info-hash of 40 hex digits, got ${JSON.stringify(shown)}`,
      };
    }
    hashes.add(line.toLowerCase());
  }
  if (hashes.size === 0) return { ok: false, line: 0, message: "no info-hash in the file" };
  return { ok: true, hashes };
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lowercase hex of `bytes` (an info-hash's key in the swarm table and the whitelist). */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}
