/**
 * One consumer of a queue at a time, started on demand: `kick()` after queueing something, and
 * the loop takes items until the queue is empty, then stops; the next `kick()` starts it again.
 *
 * Why a module for so little: the obvious form, `running ??= loop().finally(() => running =
 * undefined)`, has a gap. The loop sees the queue empty and returns, but `running` is cleared
 * a few microtask turns later; a datagram handled in between queues its item, sees the loop
 * "running" and does not start it, and the item waits until some later kick. In `server.ts`
 * that stranded a chunk request in the `--rate` queue: its backlog made every swarm request
 * after it BUSY, and BUSY requests start nothing, so a swarm stalled until a plain fetch came
 * (about 1 loaded run in 12 of the killed-fetcher test). Here the flag is cleared in the same
 * turn as the look at the empty queue, so there is no such gap.
 *
 * @module
 */

/** Runs `step` on each item `next` yields, one at a time (see the module comment). */
export class DrainLoop<T> {
  #running = false;
  readonly #next: () => T | undefined;
  readonly #step: (item: T) => Promise<void>;
  readonly #onError: (item: T, error: unknown) => Promise<void> | void;

  /**
   * `next` takes the next item off the queue (undefined: empty; it should not throw: a throw
   * ends this run of the loop, and the next kick starts another); `step` handles one; a step
   * that throws is passed to `onError` (awaited; what it throws is dropped) and the loop goes
   * on.
   */
  constructor(
    next: () => T | undefined,
    step: (item: T) => Promise<void>,
    onError: (item: T, error: unknown) => Promise<void> | void = () => {},
  ) {
    this.#next = next;
    this.#step = step;
    this.#onError = onError;
  }

  /** Whether the loop is taking items now. */
  get running(): boolean {
    return this.#running;
  }

  /** Something was queued: start the loop unless it runs. */
  kick(): void {
    // (`step` and `onError` failures are handled inside; only a throwing `next` gets here)
    if (!this.#running) void this.#run().catch(() => {});
  }

  /** `onError`, whose own failure (sync or async) is dropped: it must not end the loop. */
  async #report(item: T, error: unknown): Promise<void> {
    try {
      await this.#onError(item, error);
    } catch {
      // (e.g. the error reply could not be sent: the socket closed)
    }
  }

  async #run(): Promise<void> {
    this.#running = true; // (synchronously: an async function runs to its first await)
    try {
      for (let item = this.#next(); item !== undefined; item = this.#next()) {
        try {
          await this.#step(item);
        } catch (e) {
          await this.#report(item, e);
        }
      }
    } finally {
      this.#running = false; // (the same turn as the empty look: see the module comment)
    }
  }
}
