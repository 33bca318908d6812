/**
 * What a sharing fetcher's swarm socket has to send, as a pure queue beside its serve core: the
 * runs of blocks peers asked for, each leaving at its time under `--share-rate` (later by the
 * replies charged since it was timed, `ServeCore.sendTime`), in order; and the rule that this
 * node's own requests count toward the rate too. The shell (`lib/io/swarm_drive.ts`) reads the
 * `.part` and sends; the simulator (`lib/sim/swarm/real_swarm_sim.ts`) uses the same queue, so
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
    this.#runs.push({ to, run });
    return true;
  }

  /** When the next run may leave (ms), or undefined when none waits. */
  nextAt(): number | undefined {
    const next = this.#runs[0];
    return next && this.#core.sendTime(next.run);
  }

  /** The next run if its time has come at `now`, taken out; runs leave in the order queued. */
  takeDue(now: number): OutgoingRun<A> | undefined {
    const at = this.nextAt();
    return at !== undefined && at <= now ? this.#runs.shift() : undefined;
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
