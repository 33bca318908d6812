/**
 * A wake-up call for tasks waiting for the shared state to change (work released, a server
 * dropped, the transfer finished) — an event, not a polling sleep.
 *
 * @module
 */

/** Lets any number of tasks wait until the next `notify()`. */
export class Notifier {
  #waiters: (() => void)[] = [];

  /** Resolves at the next `notify()`. */
  wait(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Wakes every task waiting now. */
  notify(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}
