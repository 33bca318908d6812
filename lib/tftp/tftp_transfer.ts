/**
 * One TFTP read transfer, seen from the server, as a pure state machine: events in (a datagram
 * from the client's TID, a timer tick, the client repeating its request), actions out (datagrams
 * to send, when to be called back, how it ended). Time is passed in (`now`, in ms); file bytes
 * come through a `BlockSource`. No I/O, no clock, no allocation per block beyond a view.
 *
 * - RFC 1350 lock-step (windowsize 1) and RFC 7440 windows: blocks `acked+1 .. acked+W` are
 *   sent; an ACK of the window's last block opens the next window, an ACK of an earlier block
 *   (the client saw a gap) restarts the window after it.
 * - Sorcerer's apprentice (RFC 1123 §4.2.3.1): an ACK that acknowledges nothing new is ignored;
 *   only the timer retransmits.
 * - Block numbers roll over (65535 → 0); internally blocks are counted without wrapping, so a
 *   transfer can have any size.
 * - Amplification: until the client has acknowledged something (it has proved it receives at
 *   its address), only the first datagram is sent (an OACK, or DATA 1), at most `unprovenSends`
 *   times in all, whether the timer or a repeated request asks, and at most
 *   `UNPROVEN_TIMEOUT_MS` apart: an unproven transfer ends within 3 s.
 * - Idle: after `maxRetries` retransmissions without progress the transfer fails.
 * - Pacing: a window goes out in bursts `BURST_GAP_MS` apart, so a client that asked for more
 *   than its socket buffers (32 blocks of 8 KiB against the 208 KiB Linux gives a socket) still
 *   gets all of it. The burst adapts as a congestion window would: halved when the client shows
 *   a loss (an ACK short of the window's end, or a time-out), one block longer after each window
 *   acknowledged whole (RFC 7440 §4 leaves the sender free in how it sends a window).
 *
 * @module
 */

import {
  ackBlockOf,
  DATA_HEADER_SIZE,
  decode,
  encodeError,
  TftpErrorCode,
  writeDataHeader,
} from "./tftp_packet.ts";
import type { BlockSource } from "./block_source.ts";

/** Retransmissions without progress before a transfer is abandoned. */
export const MAX_RETRIES = 5;

/** Most times the first datagram is sent before the client has acknowledged anything. */
export const UNPROVEN_SENDS = 3;

/**
 * Longest retransmission timeout before the client has acknowledged anything (ms): a forged
 * request asking for `timeout 255` must not hold a slot for minutes.
 */
export const UNPROVEN_TIMEOUT_MS = 1000;

/**
 * Time between two bursts of one window (ms). The shell runs a burst due within a millisecond
 * after the current turn of its event loop (the sends of the previous burst take about that).
 */
export const BURST_GAP_MS = 0.1;

/** Bytes of the first burst of a transfer: what a default Linux socket buffer surely holds. */
export const FIRST_BURST_BYTES = 64 * 1024;

/**
 * Windows acknowledged whole before the burst may grow past the size that last lost. Each probe
 * that loses again doubles the wait, up to `MAX_PROBE_WINDOWS`: a client whose socket buffer
 * holds less than the window it asked for would otherwise lose a burst (and, for clients that
 * ignore blocks out of order, wait a time-out) every `PROBE_WINDOWS` windows.
 */
export const PROBE_WINDOWS = 16;
/** Most windows between two probes past the size that last lost. */
export const MAX_PROBE_WINDOWS = 512;

/**
 * Shortest retransmission timeout once round trips are measured (ms). A client that ignores
 * out-of-order blocks (atftp) waits for the sender's time-out after every loss: 1 s each was
 * most of a 12 s transfer that should take 0.2 s.
 */
export const MIN_RTO_MS = 20;

/** How a transfer is set up (the negotiated options). */
export interface TransferConfig {
  /** Data bytes per block. */
  blksize: number;
  /** Blocks per window (1: lock-step). */
  windowsize: number;
  /** Retransmission timeout (ms). */
  timeoutMs: number;
  /** The OACK to send first, if options were accepted; otherwise the transfer starts at DATA 1. */
  oack?: Uint8Array;
  /** Retransmissions without progress before giving up (default `MAX_RETRIES`). */
  maxRetries?: number;
  /** Sends of the first datagram allowed before the first ACK (default `UNPROVEN_SENDS`). */
  unprovenSends?: number;
}

/** How a transfer ended. */
export type TransferEnd =
  | { ok: true }
  | { ok: false; reason: string };

/**
 * What the shell must do after an event. The object and the datagram views are reused: read them
 * before calling the transfer again.
 */
export interface TransferOutput {
  /** Datagrams to send to the client, in order. */
  readonly sends: Uint8Array[];
  /** When to call `onTimer` (same clock as `now`); `Infinity`: never. */
  timerAt: number;
  /** Set once, when the transfer is over: close its socket. */
  end: TransferEnd | undefined;
}

/** Counters of one transfer. */
export interface TransferStats {
  /** Distinct blocks sent. */
  blocks: number;
  /** Data bytes in those blocks (the file's bytes, converted in netascii). */
  bytes: number;
  /** Datagrams sent again (timer or repeated request). */
  retransmits: number;
  /** Windows the client showed a loss in (an ACK short of the window, or a time-out). */
  losses: number;
  /** Of those, the ones found by the retransmission timer (the client said nothing). */
  timeouts: number;
}

/** One read transfer. */
export class TftpTransfer {
  /** Counters, updated as it goes. */
  readonly stats: TransferStats = {
    blocks: 0,
    bytes: 0,
    retransmits: 0,
    losses: 0,
    timeouts: 0,
  };
  #cfg: Required<Omit<TransferConfig, "oack">> & { oack?: Uint8Array };
  #src: BlockSource;
  /** Highest block acknowledged; -1 while an OACK waits for its ACK 0. */
  #acked = 0;
  /** Highest block sent (0: only the OACK). */
  #sentMax = 0;
  /** The last block, once the source has said so. */
  #last = Infinity;
  #deadline = Infinity;
  #retries = 0;
  /** Blocks per burst (see the module comment), and the most it grows to before probing. */
  #burst: number;
  #ceiling: number;
  #cleanWindows = 0;
  /** Clean windows needed before the ceiling rises past the size that last lost. */
  #probeEvery = PROBE_WINDOWS;
  /** Burst size of the last loss; whether bursts are at it again (a probe), for how long. */
  #lostAt = Infinity;
  #probing = false;
  #probeHeld = 0;
  /** Smoothed round trip (ms): last block of a window sent → its ACK; undefined until measured. */
  #srtt: number | undefined;
  #endSentAt = 0;
  #resentInWindow = false;
  /** The current window: its last block, the next block of it to send, and when. */
  #windowEnd = 0;
  #nextSend = 1;
  #burstAt = Infinity;
  #proven = false;
  #unprovenLeft: number;
  #started = false;
  // one slot per window position; block b always lives in slot (b-1) % windowsize
  #slots: (Uint8Array | undefined)[];
  #slotBlock: number[];
  #slotView: (Uint8Array | undefined)[];
  #slotData: (Uint8Array | undefined)[];
  #out: TransferOutput = { sends: [], timerAt: Infinity, end: undefined };

  /** A transfer with the negotiated `config`, reading blocks from `source`. */
  constructor(config: TransferConfig, source: BlockSource) {
    this.#cfg = {
      maxRetries: MAX_RETRIES,
      unprovenSends: UNPROVEN_SENDS,
      ...config,
      windowsize: Math.max(1, Math.floor(config.windowsize)),
    };
    this.#src = source;
    this.#unprovenLeft = this.#cfg.unprovenSends;
    const w = this.#cfg.windowsize;
    this.#burst = Math.max(1, Math.min(w, Math.floor(FIRST_BURST_BYTES / this.#cfg.blksize)));
    this.#ceiling = w;
    this.#slots = new Array(w).fill(undefined);
    this.#slotBlock = new Array(w).fill(0);
    this.#slotView = new Array(w).fill(undefined);
    this.#slotData = new Array(w).fill(undefined);
  }

  /** True once the client has acknowledged something: its address is proven. */
  get proven(): boolean {
    return this.#proven;
  }

  /** True once the last block has been sent (the final ACK may still be missing). */
  get sentAll(): boolean {
    return this.#sentMax >= this.#last;
  }

  /** True once the transfer has ended. */
  get ended(): boolean {
    return this.#out.end !== undefined;
  }

  /** Sends the first datagram (OACK or DATA 1). Call once. */
  start(now: number): TransferOutput {
    const out = this.#reset();
    if (this.#started || this.ended) return out;
    this.#started = true;
    if (this.#cfg.oack) this.#acked = -1;
    this.#unprovenLeft--;
    this.#sendFirst(now);
    return this.#finish(out);
  }

  /** A datagram from the client's TID. */
  onDatagram(data: Uint8Array, now: number): TransferOutput {
    const out = this.#reset();
    if (!this.#started || this.ended) return out;
    const block = ackBlockOf(data);
    if (block >= 0) {
      this.#onAck(block, now);
    } else if (data.length >= 4 && data[0] === 0 && data[1] === 5) {
      const p = decode(data);
      const what = p.ok && p.packet.op === "error"
        ? `${p.packet.code} ${JSON.stringify(p.packet.message.slice(0, 64))}`
        : "?";
      this.#end({ ok: false, reason: `client sent ERROR ${what}` });
    } // anything else from the client is ignored
    return this.#finish(out);
  }

  /** The client sent its read request again (it did not get our first datagram). */
  onRequestRepeated(now: number): TransferOutput {
    const out = this.#reset();
    if (!this.#started || this.ended || this.#proven || this.#unprovenLeft <= 0) return out;
    this.#unprovenLeft--;
    this.#sendFirst(now);
    return this.#finish(out);
  }

  /** The timer asked for at `timerAt` fired (early or late calls are fine). */
  onTimer(now: number): TransferOutput {
    const out = this.#reset();
    if (!this.#started || this.ended) return this.#finish(out);
    // (a burst due within one gap goes now: the shell calls back after a turn of its loop)
    if (now >= this.#burstAt - BURST_GAP_MS && now < this.#deadline) {
      this.#sendBurst(now);
      return this.#finish(out);
    }
    if (now < this.#deadline) return this.#finish(out);
    if (!this.#proven) {
      if (this.#unprovenLeft <= 0) {
        this.#end({ ok: false, reason: "no ACK from the client's address" });
      } else {
        this.#unprovenLeft--;
        this.#sendFirst(now);
      }
    } else if (++this.#retries > this.#cfg.maxRetries) {
      this.#end({ ok: false, reason: this.sentAll ? "no final ACK" : "timed out" });
    } else {
      this.stats.timeouts++;
      this.#lost();
      this.#sendWindow(this.#acked + 1, now);
    }
    return this.#finish(out);
  }

  #onAck(n: number, now: number): void {
    // the unwrapped block this ACK names: the one at or below #sentMax with these low 16 bits
    const b = this.#sentMax - ((this.#sentMax - n) & 0xffff);
    if (b <= this.#acked) return; // duplicate or old: never answered (sorcerer's apprentice)
    this.#acked = b;
    this.#proven = true;
    this.#retries = 0;
    if (b >= 1) this.#src.release(b);
    if (b >= this.#last) return this.#end({ ok: true });
    // the OACK's round trip is the first measure: a loss in the first window then costs a few
    // round trips, not the whole negotiated time-out
    if (b === 0 && !this.#resentInWindow) this.#srtt ??= now - this.#endSentAt;
    // short of the window's end: the client saw a gap (or gave up waiting): it was too much
    if (b < this.#windowEnd && b >= 1) this.#lost();
    else if (b >= 1) this.#windowDone(now);
    this.#sendWindow(b + 1, now);
  }

  /** A window acknowledged whole: a round trip measured, the burst one block longer. */
  #windowDone(now: number): void {
    if (!this.#resentInWindow) { // (Karn: a resent window's ACK may answer the first sending)
      const rtt = now - this.#endSentAt;
      this.#srtt = this.#srtt === undefined ? rtt : 0.875 * this.#srtt + 0.125 * rtt;
    }
    // past the size that last lost only after a run of clean windows, one block at a time
    if (++this.#cleanWindows >= this.#probeEvery && this.#ceiling < this.#cfg.windowsize) {
      this.#ceiling++;
      this.#cleanWindows = 0;
    }
    this.#burst = Math.min(this.#ceiling, this.#burst + 1);
    // a probe: bursts at (or past) the size that last lost; it holds after PROBE_WINDOWS windows
    if (this.#burst >= this.#lostAt) {
      if (!this.#probing) this.#probeHeld = 0;
      this.#probing = true;
      if (++this.#probeHeld >= PROBE_WINDOWS) {
        this.#probing = false;
        this.#lostAt = Infinity; // (that size holds now: a later loss sets the mark again)
        this.#probeEvery = PROBE_WINDOWS;
      }
    }
  }

  /**
   * The client missed blocks: smaller bursts, as a congestion window halves. A loss during a
   * probe doubles the wait before the next; a loss below the size that last lost (random loss,
   * or a client slowed down) does not.
   */
  #lost(): void {
    this.stats.losses++;
    if (this.#probing) this.#probeEvery = Math.min(MAX_PROBE_WINDOWS, 2 * this.#probeEvery);
    this.#probing = false;
    this.#lostAt = this.#burst;
    this.#ceiling = Math.max(1, this.#burst - 1);
    this.#cleanWindows = 0;
    this.#burst = Math.max(1, this.#burst >> 1);
  }

  #sendFirst(now: number): void {
    if (this.#cfg.oack) {
      const again = this.#unprovenLeft < this.#cfg.unprovenSends - 1;
      if (again) this.stats.retransmits++;
      this.#resentInWindow = again;
      this.#endSentAt = now;
      this.#out.sends.push(this.#cfg.oack);
      this.#deadline = now + this.#timeout();
    } else {
      this.#sendWindow(1, now, 1); // counts its own retransmissions
    }
  }

  /**
   * The retransmission timeout: before the client's address is proven, at most
   * `UNPROVEN_TIMEOUT_MS`; then the negotiated one, shortened to 4 round trips (at least
   * `MIN_RTO_MS`) once round trips are measured.
   */
  #timeout(): number {
    if (!this.#proven) return Math.min(this.#cfg.timeoutMs, UNPROVEN_TIMEOUT_MS);
    if (this.#srtt === undefined) return this.#cfg.timeoutMs;
    // doubled at each time-out in a row (RFC 6298 §5.5): a client that pauses (flash writes)
    // still gets its negotiated time-out before the transfer is given up
    const base = Math.max(MIN_RTO_MS, 4 * this.#srtt) * 2 ** this.#retries;
    return Math.min(this.#cfg.timeoutMs, base);
  }

  /** Starts the window of blocks `first ..` (a window, or `count`): its first burst now. */
  #sendWindow(first: number, now: number, count = this.#cfg.windowsize): void {
    this.#windowEnd = first + count - 1;
    this.#nextSend = first;
    this.#resentInWindow = first <= this.#sentMax;
    this.#sendBurst(now);
  }

  /** Sends the window's next burst, stopping after the last block; the rest is timed. */
  #sendBurst(now: number): void {
    const first = this.#nextSend;
    const stop = Math.min(first + this.#burst - 1, this.#windowEnd, this.#last);
    this.#burstAt = Infinity;
    for (let b = first; b <= stop && b <= this.#last; b++) {
      const view = this.#block(b);
      if (!view) {
        this.#out.sends.push(encodeError(TftpErrorCode.NotDefined, "file read error"));
        return this.#end({ ok: false, reason: "file read error" });
      }
      this.#out.sends.push(view);
      if (b > this.#sentMax) {
        this.#sentMax = b;
        this.stats.blocks++;
        this.stats.bytes += view.length - DATA_HEADER_SIZE;
      } else {
        this.stats.retransmits++;
      }
    }
    this.#nextSend = stop + 1;
    if (this.#nextSend <= Math.min(this.#windowEnd, this.#last)) this.#burstAt = now + BURST_GAP_MS;
    else this.#endSentAt = now;
    this.#deadline = now + this.#timeout();
  }

  /** The DATA datagram of block `b`, from its slot or read into it. */
  #block(b: number): Uint8Array | undefined {
    const i = (b - 1) % this.#cfg.windowsize;
    if (this.#slotBlock[i] === b) return this.#slotView[i];
    const slot = this.#slots[i] ??= new Uint8Array(DATA_HEADER_SIZE + this.#cfg.blksize);
    const data = this.#slotData[i] ??= slot.subarray(DATA_HEADER_SIZE);
    this.#slotBlock[i] = 0;
    const n = this.#src.read(b, data);
    if (n < 0 || n > this.#cfg.blksize) return undefined;
    if (n < this.#cfg.blksize) this.#last = Math.min(this.#last, b);
    writeDataHeader(slot, b);
    this.#slotBlock[i] = b;
    // a full block is the whole slot: no view to allocate
    return this.#slotView[i] = n === this.#cfg.blksize
      ? slot
      : slot.subarray(0, DATA_HEADER_SIZE + n);
  }

  #end(end: TransferEnd): void {
    this.#out.end ??= end;
    this.#deadline = Infinity;
    this.#burstAt = Infinity;
  }

  #reset(): TransferOutput {
    this.#out.sends.length = 0;
    return this.#out;
  }

  #finish(out: TransferOutput): TransferOutput {
    out.timerAt = this.ended ? Infinity : Math.min(this.#deadline, this.#burstAt);
    return out;
  }
}
