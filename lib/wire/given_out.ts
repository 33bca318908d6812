/**
 * Pieces never sent, inside a GIVEN_OUT error's message (PROTOCOL.md §10.6): a server that
 * refuses a swarm fetcher a piece it already gave to another one names a few pieces it has not
 * sent yet (`given out; unsent 12 57 301`, decimal), so the fetcher's next request is a first
 * copy instead of another guess. The message stays free text for logs; like BUSY progress
 * (`busy_progress.ts`) it is a convention inside it, not a layout.
 *
 * @module
 */

import { MAX_ERROR_MESSAGE_BYTES } from "./packet.ts";

const PREFIX = "given out; unsent";

/** Pieces a client takes from one message at most. */
export const MAX_UNSENT_HINTS = 32;

/** The GIVEN_OUT message naming as many of `unsent` as fit (at most {@link MAX_UNSENT_HINTS}). */
export function formatGivenOut(unsent: readonly number[]): string {
  let text = PREFIX;
  for (const piece of unsent.slice(0, MAX_UNSENT_HINTS)) {
    const next = `${text} ${piece}`;
    if (next.length > MAX_ERROR_MESSAGE_BYTES) break;
    text = next;
  }
  return text;
}

const HINTS = /^given out; unsent((?: \d{1,10})*)$/;

/**
 * The unsent pieces a GIVEN_OUT message names: distinct, below `pieces`, at most
 * {@link MAX_UNSENT_HINTS}; empty for any other text (a server may send none).
 */
export function parseGivenOut(message: string, pieces: number): number[] {
  const m = HINTS.exec(message);
  if (!m) return [];
  const out = new Set<number>();
  for (const word of m[1].split(" ")) {
    if (word === "") continue;
    const piece = Number(word);
    if (piece < pieces) out.add(piece);
    if (out.size === MAX_UNSENT_HINTS) break;
  }
  return [...out];
}
