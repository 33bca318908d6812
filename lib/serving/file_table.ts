/**
 * The server's open files: name → open handle, identity and digests.
 *
 * Names are re-resolved at most once a second and handles are kept in a small LRU. A file's
 * digests are computed once per version (real path + size + mtime + inode), by one job shared
 * by every request that needs them and by the background pass over the root (`prehash`), and
 * remembered beyond the handle's life; with a `DigestCache` they also survive a restart.
 *
 * @module
 */

import { ErrorCode, fileIdOf } from "../wire/packet.ts";
import { autoPieceSize, digestFile, type DigestFn, type FileDigest } from "../io/file_digest.ts";
import { resolveInRoot } from "./root_path.ts";
import { withTimeout } from "../io/timer.ts";
import type { DigestCache, FileVersion } from "./digest_cache.ts";
import type { LogSink } from "./log_event.ts";
import { formatBusyProgress } from "../wire/busy_progress.ts";

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
  /** When `currentSize` last asked the file system (ms, performance.now), and what it said. */
  statAt?: number;
  statSize?: number;
}

/** A refusal to serve a name, as an error code and a message for the client. */
export interface FileRefusal {
  code: number;
  message: string;
}

const NAME_TTL_MS = 1000;
/** How long a file's size and mtime, once checked, are taken as current (ms). */
const STAT_MS = 20;
const MAX_OPEN = 64;
/** Requested names remembered (many names can reach one file: `a`, `./a`, `x/../a`...). */
export const MAX_NAMES = 1024;
/**
 * File versions whose digests are remembered (at 32 bytes per piece, 16 Ki entries of 1 GiB
 * files take 512 MiB; of the small files most roots hold, a few MiB).
 */
export const MAX_DIGESTS = 16_384;

/**
 * Smallest file whose hashing gets its own "hashing"/"hashed" lines in the background pass at
 * start (on request every file gets them): a root of 10 000 small files would otherwise log
 * 20 000 lines that say nothing the pass's summary line does not.
 */
export const PREHASH_LOG_MIN_BYTES = 16 << 20;

/** What a `FileTable` needs besides its root (all optional). */
export interface FileTableOptions {
  /** Computes digests (default `digestFile`; tests inject slow or counting ones). */
  digestFn?: DigestFn;
  /** Persistent digests: loaded before hashing, written after. */
  cache?: DigestCache;
  /** Where "hashing", "hashed" and cache events go. */
  log?: LogSink;
}

/** One computation of the digests of one file version, shared by everyone who needs them. */
interface DigestJob {
  version: FileVersion;
  /** Bytes hashed so far (for BUSY answers). */
  done: number;
  promise: Promise<FileDigest>;
  /** Set once the promise has resolved (so a new handle gets its file id synchronously). */
  result?: FileDigest;
}

/** What a background pass over the root did. */
export interface PrehashSummary {
  /** Names looked at. */
  files: number;
  /** Digests loaded from the persistent cache. */
  fromCache: number;
  /** Files hashed. */
  hashed: number;
  /** Names skipped: refused, vanished, changed while hashed, or I/O errors. */
  failed: number;
  /** Files a request had already started (their digests came from the cache or were hashed). */
  onRequest: number;
  /** Whether the pass was stopped (server shutting down) before the last name. */
  stopped: boolean;
  /** Wall time of the pass (ms). */
  ms: number;
}

/**
 * The refusal a failed open or stat means to a client: a file the server may not read is
 * ACCESS_DENIED (not an internal error), one that vanished meanwhile NOT_FOUND; undefined for
 * anything else.
 */
export function refusalOfOpenError(e: unknown): FileRefusal | undefined {
  if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
    return { code: ErrorCode.AccessDenied, message: "permission denied" };
  }
  if (e instanceof Deno.errors.NotFound) {
    return { code: ErrorCode.NotFound, message: "no such file" };
  }
  return undefined;
}

/** Open handles and digests of the files under one root. */
export class FileTable {
  #root: string;
  #pieceSize: number | undefined;
  #byName = new Map<string, { file: ServedFile; checkedAt: number }>();
  #byPath = new Map<string, ServedFile>();
  /** Digest jobs by real path (one version each, the latest asked for); Map order is LRU. */
  #jobs = new Map<string, DigestJob>();
  #digestFn: DigestFn;
  #cache: DigestCache | undefined;
  #log: LogSink;
  #closed = false;
  #cacheWriteFailed = false;

  /**
   * `realRoot` must be a real path (no symlinks); `pieceSize` undefined: each file's own
   * (`autoPieceSize`).
   */
  constructor(realRoot: string, pieceSize: number | undefined, opts: FileTableOptions = {}) {
    this.#root = realRoot;
    this.#pieceSize = pieceSize;
    this.#digestFn = opts.digestFn ?? digestFile;
    this.#cache = opts.cache;
    this.#log = opts.log ?? (() => {});
  }

  /** Bytes per piece of a `size`-byte file hashed here. */
  pieceSizeFor(size: number): number {
    return this.#pieceSize ?? autoPieceSize(size);
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
    let f: ServedFile;
    try {
      const r = await resolveInRoot(this.#root, name);
      if ("kind" in r) {
        this.#byName.delete(name);
        return r.kind === "missing"
          ? { code: ErrorCode.NotFound, message: "no such file" }
          : { code: ErrorCode.AccessDenied, message: r.reason };
      }
      f = await this.#openVersion(r.realPath, r.info, now);
    } catch (e) {
      const refusal = refusalOfOpenError(e);
      if (!refusal) throw e; // a real I/O error: INTERNAL, with the cause in the log
      this.#byName.delete(name);
      return refusal;
    }
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
      f.digest = this.#job(versionOf(f), "request").promise.then((d) => {
        // the job checked its own handle; this one may have seen a change since
        if (this.currentSize(f) !== f.size || f.changed) {
          f.changed = true;
          throw new Error("file changed while being hashed");
        }
        f.fileId = fileIdOf(d.digest);
        return d;
      });
      f.digest.catch(() => {}); // a failed digest is reported to whoever awaits it, not fatal
    }
    return await withTimeout(f.digest, waitMs);
  }

  /**
   * The BUSY message for `f` while its digest is being computed: how far the hashing has
   * got, in the format of `lib/wire/busy_progress.ts`.
   */
  busyMessage(f: ServedFile): string {
    const job = this.#jobs.get(f.realPath);
    const done = job && sameVersion(job.version, versionOf(f)) ? job.done : 0;
    return formatBusyProgress(done, f.size);
  }

  /**
   * Computes the digests of `names` ahead of any request (at server start), without opening
   * serving handles: first every digest the persistent cache holds (quick), then the others
   * hashed one file at a time, so serving keeps most of the disk and CPU. Stops early when
   * `signal` aborts or the table is closed. Never throws.
   */
  async prehash(names: string[], signal?: AbortSignal): Promise<PrehashSummary> {
    const t0 = performance.now();
    const sum: PrehashSummary = {
      files: names.length,
      fromCache: 0,
      hashed: 0,
      failed: 0,
      onRequest: 0,
      stopped: false,
      ms: 0,
    };
    const stopped = () => this.#closed || signal?.aborted === true;
    const misses: FileVersion[] = [];
    for (const name of names) {
      if (stopped()) break;
      const r = await resolveInRoot(this.#root, name).catch(() => undefined);
      if (!r || "kind" in r) {
        sum.failed++;
        continue;
      }
      const v: FileVersion = {
        realPath: r.realPath,
        size: r.info.size,
        mtimeMs: r.info.mtime?.getTime() ?? 0,
        ino: r.info.ino,
      };
      const known = this.#jobs.get(v.realPath);
      if (known && sameVersion(known.version, v)) {
        sum.onRequest++; // a request got there first
        continue;
      }
      if (await this.#loadCached(v)) sum.fromCache++;
      else misses.push(v);
    }
    if (sum.fromCache > 0) {
      this.#log({
        level: "info",
        event: "cache_loaded",
        msg: `loaded ${sum.fromCache} digest${sum.fromCache === 1 ? "" : "s"} from cache in ` +
          `${((performance.now() - t0) / 1000).toFixed(3)} s`,
        fields: {
          files: sum.fromCache,
          seconds: Number(((performance.now() - t0) / 1000).toFixed(3)),
        },
      });
    }
    for (const v of misses) {
      if (stopped()) break;
      try {
        await this.#job(v, "startup").promise;
        sum.hashed++;
      } catch {
        sum.failed++;
      }
    }
    sum.ms = performance.now() - t0;
    sum.stopped = stopped();
    return sum;
  }

  /**
   * Current size of `f` (as of at most `STAT_MS` ago); marks it changed when its size or mtime
   * moved since it was opened.
   */
  currentSize(f: ServedFile, now = performance.now()): number {
    // at most one stat per file every STAT_MS: small requests on the fallback layer came one
    // per 16 KiB, and a stat each cost a tenth of the server's time
    if (f.statAt !== undefined && now - f.statAt < STAT_MS) return f.statSize!;
    const info = f.file.statSync();
    f.statAt = now;
    f.statSize = info.size;
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

  /** Closes every handle; digest jobs still running stop at their next read. */
  close(): void {
    this.#closed = true;
    for (const f of this.#byPath.values()) closeQuietly(f.file);
    this.#byPath.clear();
    this.#byName.clear();
  }

  /** Resolves once every digest job has finished (after `close`, within one read each). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#jobs.values()].map((j) => j.promise));
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
    const job = this.#jobs.get(realPath);
    if (job?.result && sameVersion(job.version, versionOf(f))) {
      // hashed before (at startup, from the cache, or under an evicted handle)
      f.digest = Promise.resolve(job.result);
      f.fileId = fileIdOf(job.result.digest);
    }
    this.#byPath.set(realPath, f);
    this.#evict();
    return f;
  }

  /** The digest job for version `v`: the running or finished one, or a new one. */
  #job(v: FileVersion, trigger: "request" | "startup"): DigestJob {
    const known = this.#jobs.get(v.realPath);
    if (known && sameVersion(known.version, v)) {
      this.#jobs.delete(v.realPath); // re-inserted last: recently used
      this.#jobs.set(v.realPath, known);
      return known;
    }
    const job = { version: v, done: 0 } as DigestJob; // its promise is set on the next line
    job.promise = this.#compute(job, trigger);
    job.promise.then((d) => job.result = d, () => {
      // a failed job is forgotten, so the next request tries again
      if (this.#jobs.get(v.realPath) === job) this.#jobs.delete(v.realPath);
    });
    this.#remember(job);
    return job;
  }

  #remember(job: DigestJob): void {
    this.#jobs.delete(job.version.realPath);
    this.#jobs.set(job.version.realPath, job);
    if (this.#jobs.size > MAX_DIGESTS) this.#jobs.delete(this.#jobs.keys().next().value!);
  }

  /** Loads `v`'s digest from the persistent cache into memory, if it is there and valid. */
  async #loadCached(v: FileVersion): Promise<boolean> {
    if (!this.#cache) return false;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(v.realPath, { read: true });
    } catch {
      return false;
    }
    try {
      if (!sameVersion(v, versionOfInfo(v.realPath, await file.stat()))) return false;
      const d = await this.#cache.load(v, this.pieceSizeFor(v.size), file);
      if (!d) return false;
      this.#remember({ version: v, done: v.size, promise: Promise.resolve(d), result: d });
      return true;
    } finally {
      closeQuietly(file);
    }
  }

  /** Loads or computes the digests of `job.version`, with a handle of its own. */
  async #compute(job: DigestJob, trigger: "request" | "startup"): Promise<FileDigest> {
    const v = job.version;
    const name = this.#relative(v.realPath);
    // A separate handle: hashing moves the file position, chunk reads must not see that.
    const file = await Deno.open(v.realPath, { read: true });
    try {
      if (!sameVersion(v, versionOfInfo(v.realPath, await file.stat()))) {
        throw new Error("file changed before being hashed");
      }
      const cached = await this.#cache?.load(v, this.pieceSizeFor(v.size), file);
      if (cached) {
        job.done = v.size;
        this.#log({
          level: "info",
          event: "cache_hit",
          msg: `digest of ${JSON.stringify(name)} loaded from cache`,
          fields: { name, size: v.size },
        });
        return cached;
      }
      const say = trigger === "request" || v.size >= PREHASH_LOG_MIN_BYTES;
      if (say) {
        this.#log({
          level: "info",
          event: "hashing",
          msg: `hashing ${JSON.stringify(name)} (${v.size} bytes)`,
          fields: { name, size: v.size, trigger },
        });
      }
      const t0 = performance.now();
      const d = await this.#digestFn(file, v.size, this.pieceSizeFor(v.size), (done) => {
        // throwing here stops digestFile at its next read: the server is shutting down
        if (this.#closed) throw new Error("server stopping");
        job.done = done;
      });
      // if the file moved while being hashed, the digest describes no real version of it
      if (!sameVersion(v, versionOfInfo(v.realPath, await file.stat()))) {
        throw new Error("file changed while being hashed");
      }
      const secs = (performance.now() - t0) / 1000;
      if (say) {
        this.#log({
          level: "info",
          event: "hashed",
          msg: `hashed ${JSON.stringify(name)} in ${secs.toFixed(3)} s`,
          fields: { name, size: v.size, seconds: Number(secs.toFixed(3)) },
        });
      }
      if (this.#cache && !this.#closed) await this.#save(v, d, file);
      return d;
    } finally {
      closeQuietly(file);
    }
  }

  async #save(v: FileVersion, d: FileDigest, file: Deno.FsFile): Promise<void> {
    try {
      await this.#cache!.save(v, d, file);
    } catch (e) {
      if (this.#cacheWriteFailed) return; // said once: a full disk must not flood the log
      this.#cacheWriteFailed = true;
      this.#log({
        level: "warn",
        event: "cache_write_failed",
        msg: `cannot write the digest cache in ${this.#cache!.dir}: ` +
          `${e instanceof Error ? e.message : String(e)}`,
        fields: { dir: this.#cache!.dir },
      });
    }
  }

  #relative(realPath: string): string {
    return realPath.startsWith(this.#root + "/") ? realPath.slice(this.#root.length + 1) : realPath;
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

function versionOf(f: ServedFile): FileVersion {
  return { realPath: f.realPath, size: f.size, mtimeMs: f.mtimeMs, ino: f.ino };
}

function versionOfInfo(realPath: string, info: Deno.FileInfo): FileVersion {
  return { realPath, size: info.size, mtimeMs: info.mtime?.getTime() ?? 0, ino: info.ino };
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a.realPath === b.realPath && a.size === b.size && a.mtimeMs === b.mtimeMs &&
    a.ino === b.ino;
}

/** Closes `file`, ignoring that it may already be closed. */
export function closeQuietly(file: Deno.FsFile): void {
  try {
    file.close();
  } catch {
    // already closed
  }
}
