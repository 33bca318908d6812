/**
 * The persistent digest cache: a restarted server loads the digests of files it hashed before
 * instead of reading them all again.
 *
 * One JSON file per served file under `<cache dir>/digests-v1/`, named by the SHA-256 of the
 * piece size and the file's real path. An entry is used only for the exact version it was
 * made from: real path, size, mtime (ms), inode and piece size must all match, the piece
 * hashes must hash to the stored root, and a quick check (SHA-256 of the size and the first
 * and last 64 KiB) must match the file as it is now, which catches most rewrites that kept
 * size and mtime. Anything else (corrupt, truncated, foreign, another version) is ignored and
 * the file is hashed again. Entries are written to a temp file and renamed, so a reader never
 * sees half an entry; the directory is created private (0700), as entries name served files.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";
import { join, sep } from "node:path";
import { type FileDigest, sha256 } from "../io/file_digest.ts";

/** The version of a file a digest describes. */
export interface FileVersion {
  realPath: string;
  size: number;
  mtimeMs: number;
  ino: number | null;
}

/** Sub-directory of the cache directory holding digest entries (bump on a format change). */
export const DIGEST_CACHE_SUBDIR = "digests-v1";

const FORMAT = "udpget-digest-cache";
const QUICK_BYTES = 64 << 10;

/**
 * The default cache directory: `$XDG_CACHE_HOME/udpget` (when set to an absolute path), else
 * `$HOME/.cache/udpget`; `undefined` when neither is known. `env` may throw (no --allow-env).
 */
export function defaultCacheDir(env: (name: string) => string | undefined): string | undefined {
  const xdg = env("XDG_CACHE_HOME");
  if (xdg && xdg.startsWith("/")) return join(xdg, "udpget");
  const home = env("HOME");
  if (home) return join(home, ".cache", "udpget");
  return undefined;
}

/** File name of the entry for `realPath` hashed with `pieceSize`. */
export function entryName(realPath: string, pieceSize: number): string {
  return createHash("sha256").update(`${pieceSize}\0${realPath}`).digest("hex") + ".json";
}

/** The text of a cache entry for digest `d` of version `v`, with its quick check. */
export function encodeEntry(v: FileVersion, d: FileDigest, quick: Uint8Array): string {
  return JSON.stringify({
    format: FORMAT,
    path: v.realPath,
    size: v.size,
    mtimeMs: v.mtimeMs,
    ino: v.ino,
    pieceSize: d.pieceSize,
    digest: hex(d.digest),
    piecesRoot: hex(d.piecesRoot),
    quick: hex(quick),
    pieceHashes: Buffer.from(d.pieceHashes).toString("base64"),
  });
}

/**
 * The digest and quick check stored in `text` if it is a well-formed entry for exactly
 * version `v` with `pieceSize`, and internally consistent; otherwise `undefined`. Never throws.
 */
export function decodeEntry(
  text: string,
  v: FileVersion,
  pieceSize: number,
): { digest: FileDigest; quick: Uint8Array } | undefined {
  let o: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== "object" || parsed === null) return undefined;
    o = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (
    o.format !== FORMAT || o.path !== v.realPath || o.size !== v.size ||
    o.mtimeMs !== v.mtimeMs || o.ino !== v.ino || o.pieceSize !== pieceSize
  ) return undefined;
  const digest = unhex(o.digest, 32);
  const piecesRoot = unhex(o.piecesRoot, 32);
  const quick = unhex(o.quick, 32);
  if (!digest || !piecesRoot || !quick || typeof o.pieceHashes !== "string") return undefined;
  const pieceHashes = new Uint8Array(Buffer.from(o.pieceHashes, "base64"));
  if (pieceHashes.length !== Math.ceil(v.size / pieceSize) * 32) return undefined;
  if (hex(sha256(pieceHashes)) !== hex(piecesRoot)) return undefined;
  return { digest: { size: v.size, pieceSize, digest, pieceHashes, piecesRoot }, quick };
}

/** SHA-256 of the size and the first and last 64 KiB of an open file of `size` bytes. */
export async function quickCheck(file: Deno.FsFile, size: number): Promise<Uint8Array> {
  const h = createHash("sha256").update(String(size)).update("\0");
  const buf = new Uint8Array(Math.min(QUICK_BYTES, size));
  for (const at of size > QUICK_BYTES ? [0, size - QUICK_BYTES] : [0]) {
    await file.seek(at, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = await file.read(buf.subarray(got));
      if (n === null || n === 0) throw new Error("file shrank");
      got += n;
    }
    h.update(buf);
  }
  return new Uint8Array(h.digest());
}

/** Digest entries in one directory. */
export class DigestCache {
  /** The directory holding the entries. */
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  /**
   * Opens (creating it if needed) the cache under `cacheDir` for a server of `realRoot`, or
   * says why it cannot be used. A cache inside the served root is refused: clients could
   * fetch it, and the walk would hash the cache itself.
   */
  static async open(cacheDir: string, realRoot: string): Promise<DigestCache | string> {
    try {
      await Deno.mkdir(join(cacheDir, DIGEST_CACHE_SUBDIR), { recursive: true, mode: 0o700 });
      const real = await Deno.realPath(join(cacheDir, DIGEST_CACHE_SUBDIR));
      const rootPrefix = realRoot.endsWith(sep) ? realRoot : realRoot + sep;
      if (real === realRoot || real.startsWith(rootPrefix)) {
        return `cache directory ${cacheDir} is inside the served root`;
      }
      return new DigestCache(real);
    } catch (e) {
      return `cache directory ${cacheDir}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  /**
   * The cached digest of version `v` (open as `file`) with `pieceSize`, if there is a valid
   * entry and its quick check matches the file's bytes now. Never throws.
   */
  async load(
    v: FileVersion,
    pieceSize: number,
    file: Deno.FsFile,
  ): Promise<FileDigest | undefined> {
    try {
      const path = join(this.dir, entryName(v.realPath, pieceSize));
      // an entry is about 43 bytes per piece plus the path: anything much larger is not ours
      const info = await Deno.stat(path);
      if (info.size > Math.ceil(v.size / pieceSize) * 48 + 16384) return undefined;
      const entry = decodeEntry(await Deno.readTextFile(path), v, pieceSize);
      if (!entry) return undefined;
      if (hex(await quickCheck(file, v.size)) !== hex(entry.quick)) return undefined;
      return entry.digest;
    } catch {
      return undefined;
    }
  }

  /** Stores digest `d` of version `v` (open as `file`), atomically. Throws on I/O errors. */
  async save(v: FileVersion, d: FileDigest, file: Deno.FsFile): Promise<void> {
    const text = encodeEntry(v, d, await quickCheck(file, v.size));
    const path = join(this.dir, entryName(v.realPath, d.pieceSize));
    const tmp = `${path}.${Deno.pid}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeTextFile(tmp, text, { mode: 0o600 });
      await Deno.rename(tmp, path);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function unhex(v: unknown, length: number): Uint8Array | undefined {
  if (typeof v !== "string" || v.length !== length * 2 || !/^[0-9a-f]*$/.test(v)) return undefined;
  return new Uint8Array(v.match(/../g)!.map((h) => parseInt(h, 16)));
}
