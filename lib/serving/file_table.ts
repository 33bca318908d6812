/**
 * The server's open files: name → open handle, identity and cached digests.
 *
 * Names are re-resolved at most once a second, handles are kept in a small LRU, and a file's
 * digests are computed once per version (size + mtime + inode) and shared by every request
 * that needs them.
 *
 * @module
 */

import { ErrorCode, fileIdOf } from "../wire/packet.ts";
import { digestFile, type FileDigest } from "../io/file_digest.ts";
import { resolveInRoot } from "./root_path.ts";
import { withTimeout } from "../io/timer.ts";

/** An open, servable file. */
export interface ServedFile {
  realPath: string;
  file: Deno.FsFile;
  size: number;
  mtimeMs: number;
  ino: number | null;
  /** Set once the digest of this version is known. */
  fileId?: bigint;
  /** Set when the file changed after it was opened: its digest no longer describes it. */
  changed: boolean;
  digest?: Promise<FileDigest>;
  lastUsed: number;
}

/** A refusal to serve a name, as an error code and a message for the client. */
export interface FileRefusal {
  code: number;
  message: string;
}

const NAME_TTL_MS = 1000;
const MAX_OPEN = 64;
/** Requested names remembered (many names can reach one file: `a`, `./a`, `x/../a`...). */
export const MAX_NAMES = 1024;

/** Open handles and digests of the files under one root. */
export class FileTable {
  #root: string;
  #pieceSize: number;
  #byName = new Map<string, { file: ServedFile; checkedAt: number }>();
  #byPath = new Map<string, ServedFile>();

  /** `realRoot` must be a real path (no symlinks). */
  constructor(realRoot: string, pieceSize: number) {
    this.#root = realRoot;
    this.#pieceSize = pieceSize;
  }

  /**
   * Resolves and opens `name`, or says why not. A name resolved less than a second ago is
   * reused unless `fresh` (metadata requests, which define the version a client will fetch).
   */
  async open(name: string, fresh = false): Promise<ServedFile | FileRefusal> {
    const now = Date.now();
    const cached = this.#byName.get(name);
    if (!fresh && cached && now - cached.checkedAt < NAME_TTL_MS && !cached.file.changed) {
      cached.file.lastUsed = now;
      return cached.file;
    }
    const r = await resolveInRoot(this.#root, name);
    if ("kind" in r) {
      this.#byName.delete(name);
      return r.kind === "missing"
        ? { code: ErrorCode.NotFound, message: "no such file" }
        : { code: ErrorCode.AccessDenied, message: r.reason };
    }
    const f = await this.#openVersion(r.realPath, r.info, now);
    this.#byName.delete(name); // re-inserted last: the Map's order is the eviction order
    this.#byName.set(name, { file: f, checkedAt: now });
    if (this.#byName.size > MAX_NAMES) this.#byName.delete(this.#byName.keys().next().value!);
    return f;
  }

  /** Number of requested names remembered (bounded by `MAX_NAMES`). */
  get namesCached(): number {
    return this.#byName.size;
  }

  /**
   * The digests of `f`, computing them if needed; `undefined` if they are not ready within
   * `waitMs` (the caller answers BUSY and the client retries).
   */
  async digest(f: ServedFile, waitMs: number): Promise<FileDigest | undefined> {
    if (!f.digest) {
      f.digest = this.#computeDigest(f);
      f.digest.catch(() => {}); // a failed digest is reported to whoever awaits it, not fatal
    }
    return await withTimeout(f.digest, waitMs);
  }

  /** Current size of `f`; marks it changed when its size or mtime moved since it was opened. */
  currentSize(f: ServedFile): number {
    const info = f.file.statSync();
    if (info.size !== f.size || (info.mtime?.getTime() ?? 0) !== f.mtimeMs) f.changed = true;
    return info.size;
  }

  /** Fills `buf` from `offset`; false if the file ended first. */
  readAt(f: ServedFile, buf: Uint8Array, offset: number): boolean {
    // Sync seek+read: no other request can move the file position in between.
    f.file.seekSync(offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = f.file.readSync(buf.subarray(got));
      if (n === null || n === 0) return false;
      got += n;
    }
    return true;
  }

  /** Closes every handle. */
  close(): void {
    for (const f of this.#byPath.values()) closeQuietly(f.file);
    this.#byPath.clear();
    this.#byName.clear();
  }

  async #openVersion(realPath: string, info: Deno.FileInfo, now: number): Promise<ServedFile> {
    const known = this.#byPath.get(realPath);
    const mtimeMs = info.mtime?.getTime() ?? 0;
    if (
      known && !known.changed && known.size === info.size && known.mtimeMs === mtimeMs &&
      known.ino === info.ino
    ) {
      known.lastUsed = now;
      return known;
    }
    if (known) this.#forget(known);
    const file = await Deno.open(realPath, { read: true });
    const f: ServedFile = {
      realPath,
      file,
      size: info.size,
      mtimeMs,
      ino: info.ino,
      changed: false,
      lastUsed: now,
    };
    this.#byPath.set(realPath, f);
    this.#evict();
    return f;
  }

  async #computeDigest(f: ServedFile): Promise<FileDigest> {
    // A separate handle: hashing moves the file position, chunk reads must not see that.
    const file = await Deno.open(f.realPath, { read: true });
    try {
      const d = await digestFile(file, f.size, this.#pieceSize);
      // if the file moved while being hashed, the digest describes no real version of it
      if (this.currentSize(f) !== f.size || f.changed) {
        f.changed = true;
        throw new Error("file changed while being hashed");
      }
      f.fileId = fileIdOf(d.digest);
      return d;
    } finally {
      closeQuietly(file);
    }
  }

  #forget(f: ServedFile): void {
    this.#byPath.delete(f.realPath);
    // In-flight handlers may still hold `f`; its handle is closed when evicted, not here.
    f.changed = true;
    this.#retired.push(f);
  }

  #retired: ServedFile[] = [];

  #evict(): void {
    for (const f of this.#retired.splice(0)) closeQuietly(f.file);
    if (this.#byPath.size <= MAX_OPEN) return;
    let oldest: ServedFile | undefined;
    for (const f of this.#byPath.values()) if (!oldest || f.lastUsed < oldest.lastUsed) oldest = f;
    if (oldest) {
      this.#byPath.delete(oldest.realPath);
      closeQuietly(oldest.file);
    }
  }
}

/** Closes `file`, ignoring that it may already be closed. */
export function closeQuietly(file: Deno.FsFile): void {
  try {
    file.close();
  } catch {
    // already closed
  }
}
