/**
 * Confinement of served paths to the server's root directory.
 *
 * A requested name is checked twice: lexically (no absolute path, no `..`, no NUL or
 * backslash) and then after symlinks are resolved (the real path must still be inside the
 * real root, and be a regular file). Either check alone can be fooled.
 *
 * @module
 */

import { join, sep } from "node:path";

/** Why a name may not be served. */
export type PathRefusal = { kind: "denied"; reason: string } | { kind: "missing" };

/** A servable file: its real path and the stat taken when it was resolved. */
export interface ResolvedFile {
  realPath: string;
  info: Deno.FileInfo;
}

/** Lexical check of a requested name; returns a reason to refuse it, or `undefined`. */
export function checkName(name: string): string | undefined {
  if (name.length === 0) return "empty name";
  if (name.includes("\0")) return "NUL byte in name";
  if (name.includes("\\")) return "backslash in name";
  if (name.startsWith("/")) return "absolute path";
  if (name.split("/").some((seg) => seg === "..")) return "'..' in path";
  return undefined;
}

/**
 * Resolves `name` under `realRoot` (which must itself be a real path, see `Deno.realPath`).
 * Never returns a path outside the root or anything but a regular file.
 */
export async function resolveInRoot(
  realRoot: string,
  name: string,
): Promise<ResolvedFile | PathRefusal> {
  const bad = checkName(name);
  if (bad) return { kind: "denied", reason: bad };
  let realPath: string;
  try {
    realPath = await Deno.realPath(join(realRoot, name));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      return { kind: "missing" };
    }
    return { kind: "denied", reason: "cannot resolve path" };
  }
  const prefix = realRoot.endsWith(sep) ? realRoot : realRoot + sep;
  if (!realPath.startsWith(prefix)) return { kind: "denied", reason: "outside the served root" };
  const info = await Deno.stat(realPath);
  if (!info.isFile) return { kind: "denied", reason: "not a regular file" };
  return { realPath, info };
}
