/**
 * The names under a server's root worth hashing ahead of the first request: a bounded,
 * breadth-first walk that never leaves the root. Directories reached through symlinks are not
 * entered (they may point out of the root, or back up into a loop); a symlink to a file is
 * listed, and like any name it is served (and hashed) only if `resolveInRoot` accepts it (so
 * not when it leads out of the root).
 *
 * @module
 */

import { checkName } from "./root_path.ts";

/** Most names listed: a root with millions of files must not delay or flood the server. */
export const MAX_WALK_FILES = 10_000;

/** Deepest directory level entered below the root. */
export const MAX_WALK_DEPTH = 32;

/** What a walk found. */
export interface RootListing {
  /** Names relative to the root, `/`-separated, as a client would ask for them. */
  names: string[];
  /** The walk stopped at `maxFiles` (or skipped directories deeper than `MAX_WALK_DEPTH`). */
  truncated: boolean;
}

/**
 * Lists up to `maxFiles` servable-looking names under `realRoot`; stops early (truncated) when
 * `signal` aborts. Never throws.
 */
export async function listRoot(
  realRoot: string,
  maxFiles = MAX_WALK_FILES,
  signal?: AbortSignal,
): Promise<RootListing> {
  const names: string[] = [];
  let truncated = false;
  const queue: { rel: string; depth: number }[] = [{ rel: "", depth: 0 }];
  while (queue.length > 0) {
    if (signal?.aborted) return { names, truncated: true };
    const { rel, depth } = queue.shift()!;
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(rel === "" ? realRoot : `${realRoot}/${rel}`));
    } catch {
      continue; // unreadable: it cannot be served either
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const name = rel === "" ? e.name : `${rel}/${e.name}`;
      if (checkName(name) !== undefined) continue; // a name no client may ask for
      if (e.isDirectory && !e.isSymlink) {
        if (depth + 1 <= MAX_WALK_DEPTH && queue.length < maxFiles) {
          queue.push({ rel: name, depth: depth + 1 });
        } else truncated = true;
      } else if (e.isFile || (e.isSymlink && await isFileBehind(`${realRoot}/${name}`))) {
        if (names.length >= maxFiles) return { names, truncated: true };
        names.push(name);
      }
    }
  }
  return { names, truncated };
}

/** Whether a symlink leads to a regular file (where to is checked when it is served). */
async function isFileBehind(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false; // dangling
  }
}
