/**
 * Line-at-a-time reading from a byte stream (stdin at the `File to fetch:` prompt) that an
 * AbortSignal can interrupt.
 *
 * The built-in `prompt()` cannot be used there: it answers Ctrl-C and Ctrl-D alike with null,
 * so an interrupt looked like "no file name given" (exit 2) instead of exit 130. Reading stdin
 * in the terminal's normal (cooked) mode leaves Ctrl-C to the kernel, which sends SIGINT to the
 * process (aborting the signal given here), and Ctrl-D to end-of-input.
 *
 * @module
 */

/** Anything with Deno's `read(p)` contract: bytes read, or null at end of input. */
export interface ByteSource {
  /** Reads into `p`; resolves with the count, or null at end of input. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Splits a {@linkcode ByteSource} into lines; bytes past a line stay for the next call. */
export class LineReader {
  #source: ByteSource;
  #decoder = new TextDecoder();
  #pending = "";
  #eof = false;

  /** Reads lines from `source`. */
  constructor(source: ByteSource) {
    this.#source = source;
  }

  /**
   * The next line without its line ending, or undefined at end of input with nothing left.
   * A last line without a final newline is returned as a line.
   *
   * @throws the signal's reason (an `AbortError` DOMException by default) once `signal` aborts;
   *   the read under way is abandoned, which is only sound when the caller is about to exit.
   */
  async readLine(signal: AbortSignal): Promise<string | undefined> {
    const chunk = new Uint8Array(4096);
    for (;;) {
      const nl = this.#pending.indexOf("\n");
      if (nl >= 0) {
        const line = this.#pending.slice(0, nl).replace(/\r$/, "");
        this.#pending = this.#pending.slice(nl + 1);
        return line;
      }
      if (this.#eof) {
        const rest = this.#pending;
        this.#pending = "";
        return rest === "" ? undefined : rest;
      }
      const n = await abortable(this.#source.read(chunk), signal);
      if (n === null) {
        this.#eof = true;
        this.#pending += this.#decoder.decode();
      } else {
        this.#pending += this.#decoder.decode(chunk.subarray(0, n), { stream: true });
      }
    }
  }
}

/** `p`, or a rejection with the signal's reason as soon as `signal` aborts. */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
