/**
 * A retry time inside a BUSY error's message (PROTOCOL.md §4.2): a source whose send queue is
 * full answers `busy; retry in <ms> ms`. Unlike a plain BUSY (a server in trouble, which the
 * asker backs off from), this one is a source doing its job at its upload cap: the asker takes
 * the piece elsewhere and comes back to this source after the time it was given, no sooner and
 * no later. The message stays free text for old clients.
 *
 * @module
 */

/**
 * Most data (ms of its upload cap) a swarm source queues before it answers BUSY with a retry
 * time instead (a sharing peer under `--share-rate`, a `serve --rate` server for flagged
 * requests). Askers count on it: a request may wait this long at such a source, besides the
 * one being sent, before it is late. The queue is also every relay hop's delay: a piece new in
 * the swarm waits behind it at each holder (the real-code simulator, 100 fetchers at 8 MiB/s:
 * 1.45 × the bound at 50 ms against 1.48 at 100 ms; one fetcher from a capped server, whose
 * pieces it keeps in flight, 1.01 against 1.11; 30 ms starved the 8-fetcher swarm of 256 KiB
 * pieces, 1.27 against 1.21).
 */
export const SWARM_QUEUE_BOUND_MS = 50;

/** Longest retry time a message may carry (ms); a longer one is read as this. */
export const MAX_BUSY_RETRY_MS = 10_000;

/** The BUSY message telling the asker to come back in `ms` (rounded up to whole ms, ≥ 1). */
export function formatBusyRetry(ms: number): string {
  return `busy; retry in ${Math.max(1, Math.ceil(Math.min(ms, MAX_BUSY_RETRY_MS)))} ms`;
}

const RETRY = /^busy; retry in (\d{1,9}) ms(?:$|[^0-9])/;

/**
 * The retry time (ms) a BUSY message carries, capped at {@link MAX_BUSY_RETRY_MS}; `undefined`
 * for any other message (a plain BUSY).
 */
export function parseBusyRetry(message: string): number | undefined {
  const m = RETRY.exec(message);
  if (!m) return undefined;
  const ms = Number(m[1]);
  return ms >= 1 ? Math.min(ms, MAX_BUSY_RETRY_MS) : undefined;
}
