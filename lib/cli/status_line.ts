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
  #timer: ReturnType<typeof setInterval> | undefined;
  #shown = false;

  /**
   * Redraws `render(width)` every `REDRAW_MS` (with `redraw`) until `stop`, writing with
   * `write` (stderr) at the width `width()` reports (the terminal's).
   */
  constructor(
    readonly render: (width: number) => string,
    readonly write: (text: string) => void = writeStderr,
    readonly width: () => number = terminalWidth,
    redraw = true,
  ) {
    if (!redraw) return;
    this.#timer = setInterval(() => this.draw(), REDRAW_MS);
    Deno.unrefTimer(this.#timer);
  }

  /** Draws the line now. */
  draw(): void {
    // one column short of the width: writing the last column makes some terminals wrap
    const line = this.render(this.width() - 1);
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
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    if (final) this.draw();
    if (this.#shown) this.#write(final ? "\n" : "\r\x1b[K");
    this.#shown = false;
  }

  #stopped = false;

  #write(text: string): void {
    this.write(text);
  }
}

const encoder = new TextEncoder();

/** Writes to stderr; a closed terminal is no reason to fail the transfer. */
function writeStderr(text: string): void {
  try {
    const bytes = encoder.encode(text);
    for (let done = 0; done < bytes.length;) done += Deno.stderr.writeSync(bytes.subarray(done));
  } catch {
    // (ignored)
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
