/**
 * What a sharing fetcher's swarm socket has to send, as a pure queue beside its serve core: the
 * runs of blocks peers asked for, leaving at the times the core gave them under `--share-rate`
 * (later by the replies charged since, `ServeCore.sendTime`); and the rule that this node's own
 * requests count toward the rate too.
 *
 * Order: runs leave in the order queued, except runs with a rank (a piece rare among this node's
 * peers, `PeerShare`), which go before every run without one, lower ranks first. Such a run takes
 * the earliest send time waiting, and the runs it passes the later ones: the times stay the core's,
 * only their order changes. Why: a fresh piece is relayed hop by hop, and at every hop it waited
 * behind the holder's queue of pieces many peers hold already (the real-code simulator, 200
 * fetchers of 8 MiB: a request waited a median 27 ms for its first block, sending the piece takes
 * 8). Few runs are ranked (a piece counts as rare until this node sent it twice), so a run without
 * a rank is held back by a few runs at most. Measured (16 KiB blocks, with held polls' batches):
 * 200 fetchers 1.305 and 1.338 × the bound at seeds 1 and 2, against 1.324 and 1.350 in queue
 * order; 32 fetchers 1.20–1.22 against 1.22–1.26 over seeds 1–5. The cost is borne by whoever needs
 * common pieces: the last of 20 fetchers arriving 75 ms apart took 1.45 × F/u_s on average over 24
 * seeds against 1.39 (1.44 before held polls' batches). The shell (`lib/io/swarm_drive.ts`) reads
 * the `.part` and sends; the simulator (`lib/sim/swarm/real_swarm_sim.ts`) uses the same queue, so
 * what decides when bytes leave is the product's code in both.
 *
 * @module
 */

import { requestIdOfRequest } from "../wire/packet.ts";
import type { RunAction, ServeCore } from "../serving/serve_core.ts";

/** Runs waiting for the share rate at most; beyond, requests are dropped (the peer asks again). */
export const MAX_QUEUED_RUNS = 4096;

/** A run of blocks for peer `to` (an address of the shell's own kind). */
export interface OutgoingRun<A> {
  to: A;
  run: RunAction;
}

/** The queue of runs and the rate's bookkeeping of a sharing node (see the module comment). */
export class ShareOutbox<A> {
  readonly #runs: OutgoingRun<A>[] = [];
  /** The send times the core gave the runs queued, in the order given. */
  readonly #slots: Pick<RunAction, "at" | "charged">[] = [];
  /** Runs with a rank: the first this many of `#runs`. */
  #ranked = 0;
  readonly #core: ServeCore;

  /** Runs paced by `core` (the sharing half's serve core, which timed them). */
  constructor(core: ServeCore) {
    this.#core = core;
  }

  /** Runs waiting. */
  get length(): number {
    return this.#runs.length;
  }

  /** Queues `run` for `to`; false (dropped) when {@link MAX_QUEUED_RUNS} already wait. */
  push(to: A, run: RunAction): boolean {
    if (this.#runs.length >= MAX_QUEUED_RUNS) return false;
    this.#slots.push({ at: run.at, charged: run.charged });
    const rank = run.rank;
    if (rank === undefined) return this.#runs.push({ to, run }), true;
    let i = 0;
    while (i < this.#ranked && this.#runs[i].run.rank! <= rank) i++;
    this.#runs.splice(i, 0, { to, run });
    this.#ranked++;
    return true;
  }

  /** When the next run may leave (ms), or undefined when none waits. */
  nextAt(): number | undefined {
    const slot = this.#slots[0];
    return slot && this.#core.sendTime(slot);
  }

  /** The next run if its time has come at `now`, taken out (see the module comment's order). */
  takeDue(now: number): OutgoingRun<A> | undefined {
    const at = this.nextAt();
    if (at === undefined || at > now) return undefined;
    this.#slots.shift();
    if (this.#ranked > 0) this.#ranked--;
    return this.#runs.shift();
  }

  /**
   * This node sent `bytes` at `now` outside the runs: its own requests (have polls, peer
   * exchange, data requests) count toward `--share-rate`, as the sharing half's replies do (it
   * charges those itself): a cap on the upload, not on the data alone, so on a link of that
   * capacity they never queue in front of the data.
   */
  sent(now: number, bytes: Uint8Array): void {
    if (requestIdOfRequest(bytes) !== undefined) this.#core.charge(now, bytes.length);
  }
}
