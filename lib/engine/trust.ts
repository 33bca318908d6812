/**
 * The fetch's trust rules, as pure decisions: which version of the file to fetch (the majority
 * of the servers, or the one `--checksum` names) and how to say why none can be, whether the
 * list of piece hashes may be used (it must hash to the root the servers agreed on), how the
 * bytes are vouched for (each piece against its hash, or the whole file against its digest),
 * and whether the final check passed. The coordinator applies them; nothing here does I/O.
 *
 * @module
 */

import { ExitCode, type ExitCodeValue, UdpgetError } from "../base/exit.ts";
import { type Consensus, type FileMeta, type MetaAnswer, toHex } from "./consensus.ts";
import { silenceText, versionText } from "./fetch_notices.ts";

/** What the user trusts (`--checksum`) and how much checking they asked for (`--verify`). */
export interface TrustOptions {
  /** `--verify full`: hash the whole file too, even when every piece checked out. */
  verify: "pieces" | "full";
  /** `--checksum sha256=HEX`: the only version to fetch, checked against this digest. */
  checksum?: Uint8Array;
  /** Whether requests carry a key (`--secret-file`): an UNSUPPORTED answer is then about it. */
  keyed: boolean;
}

/** A failed choice, as the error that ends the run and the lines to say before it. */
export interface NoVersion {
  /** Lines to say before the error (each server's version, for a tie). */
  lines: string[];
  /** The error that ends the run, with its exit code. */
  error: UdpgetError;
}

/**
 * Why `c` chose no version of `name`, as the user reads it: the key refused (exit 8), nobody
 * answered (4, naming the cause when every server had the same one), a tie (5, each server's
 * version said first), no server with the trusted digest (5), or nobody has it (3).
 */
export function noVersion(
  c: Extract<Consensus, { ok: false }>,
  name: string,
  answers: readonly MetaAnswer[],
  labels: readonly string[],
  o: TrustOptions,
): NoVersion {
  const lines: string[] = [];
  const fail = (code: ExitCodeValue, message: string): NoVersion => ({
    lines,
    error: new UdpgetError(code, message),
  });
  switch (c.reason) {
    case "auth": {
      const why = o.keyed
        ? "the key of --secret-file is refused (or the servers do not use one)"
        : "the servers require --secret-file";
      return fail(ExitCode.AuthFailed, `authentication failed: ${why}`);
    }
    case "silent": {
      const causes = new Set(answers.map((a) => a.kind === "silent" ? silenceText(a) : ""));
      const why = causes.size === 1 ? `: ${[...causes][0]}` : "";
      return fail(ExitCode.Unreachable, `no server answered${why}`);
    }
    case "tie":
      answers.forEach((ans, i) => {
        if (ans.kind === "meta") lines.push(`udpget: ${labels[i]}: ${versionText(ans.meta)}`);
      });
      return fail(
        ExitCode.Verification,
        `servers disagree on "${name}" and no version has a majority; ` +
          `pass --checksum sha256=HEX to choose the one you trust`,
      );
    case "untrusted":
      return fail(
        ExitCode.Verification,
        `no server offers "${name}" with sha256 ${toHex(o.checksum ?? new Uint8Array())}`,
      );
    case "missing":
      return fail(ExitCode.NotFound, `"${name}" is not available from any server`);
  }
}

/** The hash list as fetched, judged against the agreed root. */
export interface HashListVerdict {
  /** The list, when it can be trusted. */
  hashes?: Uint8Array;
  /** What to tell the user when it cannot. */
  notice?: string;
}

/**
 * The fetched list of piece hashes if it hashes to the `piecesRoot` every chosen server
 * published with the file (so no single server can slip in hashes of other bytes); undefined
 * when it could not be had or does not match, and the whole-file digest must vouch instead.
 */
export function judgeHashList(
  list: Uint8Array | undefined,
  meta: FileMeta,
  sha256: (bytes: Uint8Array) => Uint8Array,
): HashListVerdict {
  if (list === undefined) return {};
  if (toHex(sha256(list)) !== toHex(meta.piecesRoot)) {
    return {
      notice: "udpget: piece hash list does not match the agreed root; using the file digest",
    };
  }
  return { hashes: list };
}

/**
 * Whether pieces may be vouched for one by one, should trusted piece hashes come: not with
 * `--verify full` nor with `--checksum` (the digest the user named is the judge, and nothing
 * may be used before it has spoken).
 */
export function piecewise(o: TrustOptions): boolean {
  return o.verify !== "full" && o.checksum === undefined;
}

/** How the bytes will be vouched for. */
export interface VerificationPlan {
  /** Trusted piece hashes, if any. */
  hashes?: Uint8Array;
  /** Whether the whole file is hashed and checked against the agreed digest at the end. */
  whole: boolean;
}

/**
 * The plan once the hash list is judged: without trusted piece hashes only a full pass can vouch
 * for the file. A stream (`ring` > 0: only a reorder buffer of pieces is kept) must vouch for
 * each piece before it goes out, so without piece-by-piece checks it cannot be done at all.
 */
export function verificationPlan(
  hashes: Uint8Array | undefined,
  o: TrustOptions,
  ring: number,
): VerificationPlan | UdpgetError {
  const whole = !piecewise(o) || hashes === undefined;
  if (whole && ring > 0) {
    // (every udpget server publishes piece hashes: a server that does not is not one)
    return new UdpgetError(
      ExitCode.Verification,
      "no trusted piece hashes (the hash list could not be had or did not match its root): " +
        "a stream cannot be verified piece by piece; use -o FILE",
    );
  }
  return { hashes, whole };
}

/**
 * The final check: with a whole-file pass, its digest must be the agreed one (exit 5 if not,
 * or if none could be computed); without, every piece already checked out.
 */
export function digestFailure(
  whole: boolean,
  digest: Uint8Array | undefined,
  expected: Uint8Array,
): UdpgetError | undefined {
  if (!whole || (digest && toHex(digest) === toHex(expected))) return undefined;
  return new UdpgetError(
    ExitCode.Verification,
    `verification failed: sha256 ${digest ? toHex(digest) : "?"} != expected ${toHex(expected)}`,
  );
}
