/**
 * The words of the fetch: how the lines the coordinator hands the shell read (a server's
 * refusal, its silence, another version, a resume), kept apart from the decisions so the
 * coordinator reads as rules and the wording stays in one place. Every line starts with
 * `udpget: `, as the shell prints it.
 *
 * @module
 */

import { errorCodeName } from "../wire/packet.ts";
import { type FileMeta, type MetaAnswer, toHex } from "./consensus.ts";

/** A version of a file as a user can tell it apart: its size and the start of its digest. */
export function versionText(m: FileMeta): string {
  return `${m.size} bytes, sha256 ${toHex(m.digest).slice(0, 16)}…`;
}

/** Why a server said nothing: what the network reported, else "no answer". */
export function silenceText(ans: { unreachable?: string }): string {
  return ans.unreachable?.toLowerCase() ?? "no answer";
}

/** A server's refusal of the metadata request, as its report reason ("NOT_FOUND: ..."). */
export function refusalText(ans: { code: number; message: string }): string {
  return `${errorCodeName(ans.code)}: ${ans.message}`;
}

/** The line for a server that holds another version than the one fetched. */
export function leftOutLine(label: string, reason: string): string {
  return `udpget: ${label}: left out, it has ${reason}`;
}

/**
 * Why a server answering `m` is left out of a fetch of `chosen`: another version, or the same
 * bytes cut into other pieces (servers of one fetch must agree on the piece hashes too; a
 * server's `--piece-size`, or its default, which changed in this release).
 */
export function leftOutReason(m: FileMeta, chosen: FileMeta | undefined): string {
  if (
    chosen && m.size === chosen.size && m.pieceSize !== chosen.pieceSize &&
    toHex(m.digest) === toHex(chosen.digest)
  ) {
    return `the same file in ${m.pieceSize}-byte pieces, not ${chosen.pieceSize} ` +
      `(give its servers one --piece-size)`;
  }
  return `another version (${versionText(m)})`;
}

/**
 * One line per cause for the servers that did not answer discovery (with 50 listed and 47 dead,
 * one line and not 47), grouped by cause in the order first met, naming the first few.
 */
export function unansweredLines(
  labels: readonly string[],
  answers: readonly (MetaAnswer | undefined)[],
): string[] {
  const byCause = new Map<string, string[]>();
  answers.forEach((ans, i) => {
    if (ans?.kind !== "silent") return;
    const cause = silenceText(ans);
    byCause.set(cause, [...(byCause.get(cause) ?? []), labels[i]]);
  });
  const lines: string[] = [];
  for (const [cause, names] of byCause) {
    if (names.length === 1) {
      lines.push(`udpget: ${names[0]}: ${cause}`);
      continue;
    }
    const shown = names.slice(0, 3).join(", ");
    const more = names.length > 3 ? ` and ${names.length - 3} more` : "";
    lines.push(`udpget: ${names.length} servers, ${cause}: ${shown}${more}`);
  }
  return lines;
}

/** What a resume's re-check of the pieces an earlier run claimed found. */
export function resumeLine(output: string, kept: number, pieceCount: number, bad: number): string {
  return `udpget: resuming ${output}: ${kept} of ${pieceCount} pieces already verified` +
    (bad === 1 ? ", 1 failed its re-check and will be fetched again" : "") +
    (bad > 1 ? `, ${bad} failed their re-check and will be fetched again` : "");
}
