/**
 * Admission of TFTP read requests: how many transfers one client IP and the whole server may
 * have at once, and how many of them may still be unproven (no ACK from the client's address
 * yet: the address may be forged). Pure bookkeeping; the shell calls `admit` before it opens
 * anything, `prove` at a transfer's first ACK, `release` when it ends.
 *
 * The per-client limit is the udpget protocol's (`MAX_TRANSFERS_PER_CLIENT`). The total is
 * lower than udpget's because a TFTP transfer holds a socket, a file handle and up to
 * `MAX_WINDOW_BYTES` + `READ_AHEAD_BYTES` of buffers for as long as it lasts.
 *
 * @module
 */

import { MAX_TRANSFERS_PER_CLIENT } from "../serving/transfer_log.ts";

/** Transfers one client IP may have at once (the udpget protocol's limit). */
export const MAX_TFTP_TRANSFERS_PER_CLIENT: number = MAX_TRANSFERS_PER_CLIENT;

/** Transfers at once, all clients together. */
export const MAX_TFTP_TRANSFERS = 128;

/** Unproven transfers one IP may have at once: bounds what forged requests can aim at a victim. */
export const MAX_UNPROVEN_PER_CLIENT = 4;

/** Unproven transfers at once, all IPs together. */
export const MAX_UNPROVEN = 64;

/** A refused request: `silent` refusals get no answer (the address is not proven). */
export interface TftpRefusal {
  /** True: drop the request without answering. */
  silent: boolean;
  /** The reason, for an ERROR packet and the counters. */
  message: string;
}

interface ClientCount {
  all: number;
  unproven: number;
}

/** Counts transfers per client IP and in total, and refuses those beyond the limits. */
export class TftpAdmission {
  #clients = new Map<string, ClientCount>();
  #total = 0;
  #unproven = 0;

  /** Transfers admitted and not released. */
  get total(): number {
    return this.#total;
  }

  /** Of those, the ones not proven yet. */
  get unproven(): number {
    return this.#unproven;
  }

  /** Client IPs with at least one transfer (bounded by `MAX_TFTP_TRANSFERS`). */
  get clients(): number {
    return this.#clients.size;
  }

  /** Admits a new (unproven) transfer from `ip`, or says why not. */
  admit(ip: string): TftpRefusal | undefined {
    const c = this.#clients.get(ip);
    if ((c?.unproven ?? 0) >= MAX_UNPROVEN_PER_CLIENT || this.#unproven >= MAX_UNPROVEN) {
      return { silent: true, message: "too many unacknowledged transfers" };
    }
    if ((c?.all ?? 0) >= MAX_TFTP_TRANSFERS_PER_CLIENT) {
      return { silent: false, message: "too many transfers from your address" };
    }
    if (this.#total >= MAX_TFTP_TRANSFERS) return { silent: false, message: "server busy" };
    if (c) {
      c.all++;
      c.unproven++;
    } else {
      this.#clients.set(ip, { all: 1, unproven: 1 });
    }
    this.#total++;
    this.#unproven++;
    return undefined;
  }

  /** A transfer from `ip` got its first ACK. Call once per transfer. */
  prove(ip: string): void {
    const c = this.#clients.get(ip);
    if (!c || c.unproven === 0) return;
    c.unproven--;
    this.#unproven--;
  }

  /** A transfer from `ip` ended; `proven`: whether `prove` was called for it. */
  release(ip: string, proven: boolean): void {
    const c = this.#clients.get(ip);
    if (!c) return;
    if (!proven && c.unproven > 0) {
      c.unproven--;
      this.#unproven--;
    }
    c.all--;
    this.#total--;
    if (c.all <= 0) this.#clients.delete(ip);
  }
}
