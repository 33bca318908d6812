/**
 * One redrawn status line on a terminal (stderr), and messages printed above it on lines of
 * their own: a message first clears the line, then the next redraw puts the line back.
 *
 * @module
 */

/** How often the line is redrawn (ms). */
export const REDRAW_MS = 200;

/** A status line kept at the bottom of the terminal while messages scroll above it. */
export class StatusLine {
  #enc = new TextEncoder();
  #timer: ReturnType<typeof setInterval> | undefined;
  #shown = false;

  /** Redraws `render(width)` every `REDRAW_MS` until `stop`. */
  constructor(readonly render: (width: number) => string) {
    this.#timer = setInterval(() => this.draw(), REDRAW_MS);
    Deno.unrefTimer(this.#timer);
  }

  /** Draws the line now. */
  draw(): void {
    // one column short of the width: writing the last column makes some terminals wrap
    const line = this.render(terminalWidth() - 1);
    if (line === "" && !this.#shown) return; // nothing to show (yet)
    this.#write(`\r${line}\x1b[K`);
    this.#shown = line !== "";
  }

  /** Prints `message` on a line of its own above the status line. */
  note(message: string): void {
    this.#write(`${this.#shown ? "\r\x1b[K" : ""}${message}\n`);
    this.#shown = false;
  }

  /** Draws the line a last time (if `final`), ends it and stops redrawing. */
  stop(final = true): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (final) this.draw();
    if (this.#shown) this.#write(final ? "\n" : "\r\x1b[K");
    this.#shown = false;
  }

  #write(text: string): void {
    try {
      Deno.stderr.writeSync(this.#enc.encode(text));
    } catch {
      // a closed terminal is no reason to fail the transfer
    }
  }
}

/** Columns of the terminal on stderr (80 if unknown). */
export function terminalWidth(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}
