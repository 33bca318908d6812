/**
 * Which servers to fetch from: the metadata most servers agree on wins.
 *
 * A server that answers with another size or digest holds another version of the file (or
 * lies); mixing its bytes in would corrupt the output, so it is left out and reported.
 *
 * @module
 */

import { ErrorCode } from "../wire/packet.ts";

/** The part of a META_REPLY that must be identical for two servers to be used together. */
export interface FileMeta {
  /** File size in bytes. */
  size: number;
  /** Piece size the server hashes with. */
  pieceSize: number;
  /** Largest block the server sends. */
  maxBlock: number;
  /** SHA-256 of the whole file. */
  digest: Uint8Array;
  /** SHA-256 of the concatenated piece hashes. */
  piecesRoot: Uint8Array;
  /** Modification time on that server (informational: it may differ between servers). */
  mtimeMs: number;
}

/** How one server answered the metadata request. */
export type MetaAnswer =
  | { kind: "meta"; meta: FileMeta }
  | { kind: "error"; code: number; message: string }
  /** No answer: silence, or `unreachable` when the network said so (ICMP). */
  | { kind: "silent"; unreachable?: string };

/** The decision: which servers to use, and what to tell the user about the others. */
export type Consensus =
  | {
    ok: true;
    meta: FileMeta;
    /** Indices of the servers that agree on `meta`. */
    servers: number[];
    /** Servers left out because their metadata differs. */
    disagreeing: number[];
  }
  | {
    ok: false;
    /**
     * `missing`: every server that answered refused; `silent`: nobody answered; `untrusted`:
     * servers have the file, but none with the trusted digest; `tie`: servers disagree and no
     * version is held by more servers than every other (without a trusted digest); `auth`:
     * nobody offers the file and some server refused our authentication.
     */
    reason: "missing" | "silent" | "untrusted" | "tie" | "auth";
  };

/** Hex encoding of bytes, for messages and map keys. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function agreementKey(m: FileMeta): string {
  return `${m.size}/${m.pieceSize}/${toHex(m.digest)}/${toHex(m.piecesRoot)}`;
}

/** AUTH_FAILED, or UNSUPPORTED (flags) from a server without a key when we send one. */
function isAuthRefusal(a: MetaAnswer, keyed: boolean): boolean {
  return a.kind === "error" &&
    (a.code === ErrorCode.AuthFailed || (keyed && a.code === ErrorCode.Unsupported));
}

function firstMeta(answers: MetaAnswer[], group: number[]): FileMeta {
  return (answers[group[0]] as { meta: FileMeta }).meta;
}

/**
 * Picks the metadata held by the most servers. Without `trustedDigest`, a tie between versions
 * is refused: udpget cannot tell which one the user wants, and guessing would fetch a file the
 * user may not trust. With `trustedDigest`, only servers offering that digest count (a tie
 * among them, e.g. two piece sizes, goes to the group holding the server listed first).
 * When nobody offers the file and some server refused authentication (or, for a client with a
 * key — `keyed` — did not understand it), the cause is the key, not the file: reason `auth`.
 */
export function chooseMeta(
  answers: MetaAnswer[],
  trustedDigest?: Uint8Array,
  keyed = false,
): Consensus {
  const groups = new Map<string, number[]>();
  answers.forEach((a, i) => {
    if (a.kind !== "meta") return;
    const key = agreementKey(a.meta);
    groups.set(key, [...(groups.get(key) ?? []), i]);
  });
  let best: number[] | undefined;
  let tied = false;
  for (const members of groups.values()) {
    const meta = (answers[members[0]] as { meta: FileMeta }).meta;
    if (trustedDigest && toHex(meta.digest) !== toHex(trustedDigest)) continue;
    // same bytes under another piece size is no rival version
    const rival = best && toHex(meta.digest) !== toHex(firstMeta(answers, best).digest);
    if (best && members.length === best.length && rival) tied = true;
    if (!best || members.length > best.length) {
      best = members; // Map keeps first-seen order
      tied = false;
    }
  }
  if (tied && !trustedDigest) return { ok: false, reason: "tie" };
  if (!best) {
    if (groups.size > 0) return { ok: false, reason: "untrusted" };
    if (answers.some((a) => isAuthRefusal(a, keyed))) return { ok: false, reason: "auth" };
    const anyAnswer = answers.some((a) => a.kind !== "silent");
    return { ok: false, reason: anyAnswer ? "missing" : "silent" };
  }
  const chosen = new Set(best);
  const disagreeing = answers.flatMap((a, i) => a.kind === "meta" && !chosen.has(i) ? [i] : []);
  const meta = (answers[best[0]] as { meta: FileMeta }).meta;
  return { ok: true, meta, servers: best, disagreeing };
}

/** Whether two servers' metadata describe the same version (the same bytes, hashed alike). */
export function sameVersion(a: FileMeta, b: FileMeta): boolean {
  return agreementKey(a) === agreementKey(b);
}

/**
 * The choice `chooseMeta` will make, as soon as the answers so far (undefined: still asked)
 * decide it whatever the others answer: a version held by a strict majority of all servers
 * cannot be outnumbered or tied, and with a trusted digest every server offering it is usable.
 * The transfer can start then; servers answering later join it if they agree. Undefined while
 * the outcome is open.
 */
export function settledMeta(
  partial: (MetaAnswer | undefined)[],
  trustedDigest?: Uint8Array,
  keyed = false,
): Consensus | undefined {
  const answers = partial.map((a): MetaAnswer => a ?? { kind: "silent" });
  const c = chooseMeta(answers, trustedDigest, keyed);
  if (partial.every((a) => a !== undefined)) return c;
  if (!c.ok) return undefined;
  return trustedDigest || 2 * c.servers.length > partial.length ? c : undefined;
}
