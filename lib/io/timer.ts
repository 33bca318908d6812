/**
 * Timers for the `Promise.race` based retry scheduling of the I/O layers.
 *
 * @module
 */

/** Handle returned by `setTimeout`, whichever typing (DOM or Node) is in scope. */
export type TimerHandle = ReturnType<typeof setTimeout>;

/** Resolves `undefined` after `ms`, or at once if `signal` aborts; the timer never leaks. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer: TimerHandle = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Races `p` against a timer of `ms`: the value of `p`, or `undefined` if the timer fires
 * first. The timer is cleared either way, so thousands of races leave nothing behind.
 */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: TimerHandle | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
