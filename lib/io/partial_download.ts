/**
 * `OUT.part` and its resume state `OUT.part.state`: opening (fresh, resumed or started over),
 * recording verified pieces, and keeping or discarding both when the fetch ends.
 *
 * The state file is written before the `.part` is created and then at most once a second, so
 * a `.part` made by udpget always has a state beside it; a `.part` without one is somebody
 * else's file and is not overwritten without `--force`.
 *
 * @module
 */

import { dirname } from "node:path";
import type { FileMeta } from "../engine/consensus.ts";
import { bytesNeeded, freeBytes, roomShortfall } from "./disk_space.ts";
import { ExitCode, ioMessage, UdpgetError } from "../base/exit.ts";
import { closeQuietly } from "../serving/file_table.ts";
import {
  decodeResumeState,
  encodeResumeState,
  freshState,
  markPiece,
  planResume,
  type ResumeState,
} from "./resume_state.ts";

/** How often (ms) newly verified pieces are recorded in the state file. */
export const STATE_FLUSH_MS = 1000;

/**
 * Whether a fetch that failed with `error` should keep its `.part` for a resume: not when the
 * whole file proved wrong (its bytes are not worth continuing), nor when nothing was verified.
 */
export function keepAfterFailure(error: unknown, verifiedPieces: number): boolean {
  const wrong = error instanceof UdpgetError && error.exitCode === ExitCode.Verification;
  return !wrong && verifiedPieces > 0;
}

/**
 * Allocates `size` bytes for the file at `path` ahead of the writes; the reason when the space
 * is not there, undefined otherwise (see `disk_space.ts`'s `reserveSpace`).
 */
export type SpaceReserver = (path: string, size: number) => string | undefined;

/** Where a partial download of `out` lives. */
export function partialPaths(out: string): { part: string; state: string } {
  return { part: `${out}.part`, state: `${out}.part.state` };
}

/** An open `.part` file and its state. */
export class PartialDownload {
  /** Pieces an earlier run recorded as verified; to be re-checked before being trusted. */
  readonly claimed: number[];
  #state: ResumeState;
  #dirty = false;
  #timer: ReturnType<typeof setInterval>;
  #writing: Promise<void> = Promise.resolve();

  private constructor(
    readonly file: Deno.FsFile,
    readonly partPath: string,
    readonly statePath: string,
    state: ResumeState,
    claimed: number[],
  ) {
    this.#state = state;
    this.claimed = claimed;
    this.#timer = setInterval(() => void this.flush(), STATE_FLUSH_MS);
    Deno.unrefTimer(this.#timer); // never the reason the process stays alive
  }

  /**
   * Opens `OUT.part` for the file `name` described by `meta`: continues an earlier partial
   * download of the same version, starts over (saying why through `log`) when the servers'
   * version changed, and refuses a `.part` udpget did not make unless `force`. A file that
   * cannot fit is refused before anything is written (exit 6, naming the path); with `reserve`
   * its blocks are allocated up front, so a full disk cannot surface half-way.
   */
  static async open(
    out: string,
    name: string,
    meta: FileMeta,
    force: boolean,
    log: (line: string) => void,
    reserve?: SpaceReserver,
    /** Bytes the `.part` holds (a stream's ring, see `piece_ring.ts`); default the file's size. */
    capacity = meta.size,
  ): Promise<PartialDownload> {
    const { part, state: statePath } = partialPaths(out);
    let claimed: number[] = [];
    const info = await Deno.lstat(part).catch(() => undefined);
    if (info) {
      if (!info.isFile) {
        throw new UdpgetError(ExitCode.LocalIo, `${part} exists and is not a regular file`);
      }
      const text = await Deno.readTextFile(statePath).catch(() => "");
      const plan = planResume(decodeResumeState(text), name, meta);
      if (plan.kind === "resume") {
        claimed = plan.pieces;
      } else if (plan.kind === "changed") {
        log(`udpget: ${part} holds ${plan.was}; the servers' file changed, starting over`);
      } else if (!force) {
        throw new UdpgetError(
          ExitCode.OutputExists,
          `${part} exists and is not a udpget partial download; remove it or use --force`,
        );
      }
    }
    // what the .part does not hold yet (an old one's blocks are reused or freed) must fit
    const needed = bytesNeeded(capacity, (info?.blocks ?? 0) * 512);
    const shortfall = roomShortfall(part, needed, await freeBytes(dirname(part)));
    if (shortfall) throw new UdpgetError(ExitCode.LocalIo, shortfall);
    const state = freshState(name, meta);
    for (const p of claimed) markPiece(state, p);
    let file: Deno.FsFile;
    try {
      await writeAtomically(statePath, encodeResumeState(state));
      // createNew when there was none: a symlink planted since the lstat is not followed
      file = await Deno.open(part, {
        read: true,
        write: true,
        ...(info ? { truncate: claimed.length === 0 } : { createNew: true }),
      });
    } catch (e) {
      throw new UdpgetError(ExitCode.LocalIo, `cannot write ${part}: ${ioMessage(e)}`);
    }
    let refused: string | undefined;
    try {
      await file.truncate(capacity);
      refused = reserve?.(part, capacity);
    } catch (e) {
      refused = ioMessage(e);
    }
    if (refused !== undefined) {
      closeQuietly(file);
      if (claimed.length === 0) {
        // nothing in it worth a resume: leave nothing behind
        await Deno.remove(part).catch(() => {});
        await Deno.remove(statePath).catch(() => {});
      }
      throw new UdpgetError(ExitCode.LocalIo, `cannot make room for ${part}: ${refused}`);
    }
    // claims are re-checked by the caller; until then only the checked ones count
    return new PartialDownload(file, part, statePath, freshState(name, meta), claimed);
  }

  /** Records that `piece` is verified and written (saved within `STATE_FLUSH_MS`). */
  recordVerified(piece: number): void {
    markPiece(this.#state, piece);
    this.#dirty = true;
  }

  /** Writes the state now if it changed; writes never overlap. */
  flush(): Promise<void> {
    if (!this.#dirty) return this.#writing;
    this.#dirty = false;
    const text = encodeResumeState(this.#state);
    this.#writing = this.#writing.then(() => writeAtomically(this.statePath, text)).catch(
      () => {}, // a failed state write costs a re-check or re-fetch later, not correctness
    );
    return this.#writing;
  }

  /** The download failed or was interrupted: saves the state and closes `.part`, keeping both. */
  async keep(): Promise<void> {
    clearInterval(this.#timer);
    this.#dirty = true;
    await this.flush();
    closeQuietly(this.file);
  }

  /** Closes `.part` and removes it and the state (nothing worth resuming, or it is wrong). */
  async discard(): Promise<void> {
    clearInterval(this.#timer);
    await this.#writing;
    closeQuietly(this.file);
    await Deno.remove(this.partPath).catch(() => {});
    await Deno.remove(this.statePath).catch(() => {});
    await Deno.remove(`${this.statePath}.tmp`).catch(() => {});
  }

  /** `.part` became the output: stops recording and removes the state. */
  async complete(): Promise<void> {
    clearInterval(this.#timer);
    await this.#writing;
    closeQuietly(this.file);
    await Deno.remove(this.statePath).catch(() => {});
    await Deno.remove(`${this.statePath}.tmp`).catch(() => {});
  }
}

/**
 * Temp file + rename: a reader sees the old state or the new one, never half of one. On a full
 * disk the temp file cannot get a block; the state of one file always has the same length, so
 * it is then written over the old one in place, which needs no new block (not atomic, but a torn
 * state is only a claim, and claims are re-checked before they are trusted).
 */
async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  try {
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {}); // (a 0-byte one is left by a failed write)
    if (!(await overwriteInPlace(path, new TextEncoder().encode(text)))) throw e;
  }
}

/** Writes `bytes` over the file at `path` if it has exactly that length; false otherwise. */
async function overwriteInPlace(path: string, bytes: Uint8Array): Promise<boolean> {
  const info = await Deno.lstat(path).catch(() => undefined);
  if (!info?.isFile || info.size !== bytes.length) return false;
  let f: Deno.FsFile | undefined;
  try {
    f = await Deno.open(path, { write: true });
    for (let done = 0; done < bytes.length;) done += await f.write(bytes.subarray(done));
    return true;
  } catch {
    return false;
  } finally {
    if (f) closeQuietly(f);
  }
}
