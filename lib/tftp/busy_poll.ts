/**
 * Adaptive busy-polling for lock-step TFTP transfers. Pure: the shell reports each ACK it
 * received (with the time, passed in), this says how long to spin before the next receive.
 *
 * In lock-step (one block per ACK, as curl does), each block costs one round trip, and on a fast
 * path much of that round trip is wake-ups. A thread that sleeps in epoll between our DATA and
 * the client's ACK pays one (on a virtual machine: an inter-processor interrupt and a halted
 * vCPU, tens of µs); one that spins for a few µs after sending finds the ACK already queued.
 * Linux's `SO_BUSY_POLL` does this in the kernel; Deno has no such option, so the shell spins
 * before it asks for the next datagram.
 *
 * Spinning only pays when the client runs on another CPU. When it shares ours, our spin delays
 * its answer, and the transfer gets slower. So spinning is decided by measurement, not guessed:
 * the transfer alternates a probe with spinning and one without (`PROBE_BLOCKS` ACKs each),
 * then runs `RUN_BLOCKS` ACKs in whichever mode had the shorter time per block, and probes
 * again. While spinning, the spin length follows the ACK delay: a spin that ends with the ACK
 * already there (a hit) is shortened a little, a miss lengthens it, up to `MAX_SPIN_US`.
 *
 * @module
 */

/** Longest spin before one receive (µs). */
export const MAX_SPIN_US = 50;

/** First spin length (µs). */
export const INITIAL_SPIN_US = 20;

/** A receive that completes within this long after the spin found the ACK already there (µs). */
export const HIT_US = 4;

/** ACKs per probe (one probe spinning, one not). */
export const PROBE_BLOCKS = 256;

/** ACKs run in the faster mode between probes. */
export const RUN_BLOCKS = 4096;

type Phase = "probe-on" | "probe-off" | "run";

/** How long to spin before each receive of one transfer, learned from its round trips. */
export class BusyPoll {
  #spin = INITIAL_SPIN_US;
  #spinning = true;
  #phase: Phase = "probe-on";
  #left = PROBE_BLOCKS;
  #phaseStart = -1;
  #phaseCount = 0;
  /** Mean ms per ACK in the last probe with spinning. */
  #onMs = Infinity;

  /** Microseconds to spin before the next receive (0: do not spin). */
  next(): number {
    return this.#spinning ? this.#spin : 0;
  }

  /** True if the current phase spins. */
  get spinning(): boolean {
    return this.#spinning;
  }

  /**
   * Reports an ACK received at `now` (ms) by a receive that followed a spin of `spunUs` (0: no
   * spin) and then took `waitedUs` to complete.
   */
  record(now: number, spunUs: number, waitedUs: number): void {
    if (spunUs > 0) {
      this.#spin = waitedUs < HIT_US
        ? Math.max(1, this.#spin - 0.25)
        : Math.min(MAX_SPIN_US, this.#spin + 2);
    }
    if (this.#phaseStart < 0) {
      this.#phaseStart = now; // the first ACK of a phase starts its clock
      return;
    }
    this.#phaseCount++;
    if (--this.#left > 0) return;
    const perAck = (now - this.#phaseStart) / this.#phaseCount;
    switch (this.#phase) {
      case "probe-on":
        this.#onMs = perAck;
        this.#enter("probe-off", false, PROBE_BLOCKS);
        break;
      case "probe-off":
        this.#enter("run", this.#onMs < perAck, RUN_BLOCKS);
        break;
      case "run":
        this.#enter("probe-on", true, PROBE_BLOCKS);
        break;
    }
  }

  #enter(phase: Phase, spinning: boolean, acks: number): void {
    this.#phase = phase;
    this.#spinning = spinning;
    this.#left = acks;
    this.#phaseStart = -1;
    this.#phaseCount = 0;
  }
}
