/**
 * The resume state kept beside `OUT.part`: which file version the partial download belongs to
 * and which of its pieces were verified. Pure: encoding, decoding and the decision whether an
 * earlier `.part` can be continued; the client does the file I/O.
 *
 * The state is a small JSON document (`OUT.part.state`) written atomically (temp + rename).
 * It is only a hint: the client re-checks every piece it claims against the piece hashes
 * before trusting it, so a torn `.part` (power loss) costs a re-fetch, never a wrong byte.
 *
 * @module
 */

import type { FileMeta } from "../engine/consensus.ts";
import { toHex } from "../engine/consensus.ts";

/** Format version of the state document. */
export const RESUME_STATE_VERSION = 1;

/** What a partial download is and how far it got. */
export interface ResumeState {
  /** The name asked of the servers. */
  name: string;
  /** Identity of the file version being fetched. */
  size: number;
  pieceSize: number;
  /** Whole-file SHA-256 and root of the piece hashes, hex. */
  digest: string;
  piecesRoot: string;
  /** One bit per piece (LSB first): 1 = verified and written to `.part`. */
  verified: Uint8Array;
}

/** Builds the state of a fresh download of `meta`, with nothing verified yet. */
export function freshState(name: string, meta: FileMeta): ResumeState {
  return {
    name,
    size: meta.size,
    pieceSize: meta.pieceSize,
    digest: toHex(meta.digest),
    piecesRoot: toHex(meta.piecesRoot),
    verified: new Uint8Array(Math.ceil(pieceCount(meta.size, meta.pieceSize) / 8)),
  };
}

/** Number of pieces of a file of `size` bytes. */
function pieceCount(size: number, pieceSize: number): number {
  return Math.ceil(size / pieceSize);
}

/** Records piece `piece` as verified. */
export function markPiece(state: ResumeState, piece: number): void {
  state.verified[piece >> 3] |= 1 << (piece & 7);
}

/** The pieces `state` records as verified, in increasing order. */
export function verifiedPieces(state: ResumeState): number[] {
  const out: number[] = [];
  const n = pieceCount(state.size, state.pieceSize);
  for (let p = 0; p < n; p++) if (state.verified[p >> 3] & (1 << (p & 7))) out.push(p);
  return out;
}

/** The state as the JSON text stored on disk. */
export function encodeResumeState(s: ResumeState): string {
  return JSON.stringify({
    udpget: RESUME_STATE_VERSION,
    name: s.name,
    size: s.size,
    pieceSize: s.pieceSize,
    digest: s.digest,
    piecesRoot: s.piecesRoot,
    verified: toBase64(s.verified),
  }) + "\n";
}

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Parses a state document; `undefined` if it is not a well-formed udpget state. */
export function decodeResumeState(text: string): ResumeState | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const o = v as Record<string, unknown>;
  const hex64 = (x: unknown) => typeof x === "string" && /^[0-9a-f]{64}$/.test(x);
  if (
    o.udpget !== RESUME_STATE_VERSION || typeof o.name !== "string" ||
    !Number.isSafeInteger(o.size) || (o.size as number) < 0 ||
    !Number.isSafeInteger(o.pieceSize) || (o.pieceSize as number) <= 0 ||
    !hex64(o.digest) || !hex64(o.piecesRoot) || typeof o.verified !== "string"
  ) return undefined;
  let bits: Uint8Array;
  try {
    bits = Uint8Array.from(atob(o.verified), (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
  const size = o.size as number;
  const pieceSize = o.pieceSize as number;
  if (bits.length !== Math.ceil(pieceCount(size, pieceSize) / 8)) return undefined;
  return {
    name: o.name,
    size,
    pieceSize,
    digest: o.digest as string,
    piecesRoot: o.piecesRoot as string,
    verified: bits,
  };
}

/** What to do with an existing `.part`, given its state (if any) and the agreed metadata. */
export type ResumePlan =
  /** Continue: these pieces are claimed verified (re-check them before trusting them). */
  | { kind: "resume"; pieces: number[] }
  /** The servers now have another version of the file: start over, and say so. */
  | { kind: "changed"; was: string }
  /** No usable state: the `.part` is not a udpget partial download of this file. */
  | { kind: "foreign" };

/** Decides whether the partial download described by `state` continues the fetch of `meta`. */
export function planResume(
  state: ResumeState | undefined,
  name: string,
  meta: FileMeta,
): ResumePlan {
  if (!state) return { kind: "foreign" };
  if (state.name !== name) {
    return { kind: "changed", was: `a download of ${JSON.stringify(state.name)}` };
  }
  if (
    state.size !== meta.size || state.pieceSize !== meta.pieceSize ||
    state.digest !== toHex(meta.digest) || state.piecesRoot !== toHex(meta.piecesRoot)
  ) {
    return {
      kind: "changed",
      was: `another version (${state.size} bytes, sha256 ${state.digest.slice(0, 16)}…)`,
    };
  }
  return { kind: "resume", pieces: verifiedPieces(state) };
}
