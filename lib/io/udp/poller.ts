/**
 * Readiness for every batched socket of the process through one epoll instance, waited on by one
 * `epoll_wait` at a time on Deno's blocking thread pool (a `nonblocking` FFI call). A wait per
 * socket would hold a pool thread per socket, and Deno's pool has 32: a fetch from 8 servers with
 * 4 connections (32 sockets) left no thread for file operations, and hung.
 *
 * Interest is one-shot (EPOLLONESHOT): a socket is watched only while a caller waits on it, so a
 * ready socket that nobody waits for cannot make `epoll_wait` return again and again. A wake
 * eventfd, in the same set, ends the pending `epoll_wait` when the last waiter goes, so the
 * process can exit. Spurious wake-ups are allowed: callers drain until EAGAIN and wait again.
 *
 * @module
 */

import { C, LAYOUT, type Libc } from "./libc.ts";

/** Readiness a caller waits for. */
export type Readiness = "in" | "out";

/** Events taken from the kernel per `epoll_wait`. */
const MAX_EVENTS = 64;
/** `data` of the wake eventfd's registration (sockets use their descriptor, never negative). */
const WAKE = -1;

interface Watch {
  in: (() => void)[];
  out: (() => void)[];
}

/** One process-wide epoll set (see the module comment). */
export class Poller {
  #libc: Libc;
  #epfd: number;
  #wakefd: number;
  #watches = new Map<number, Watch>();
  #running = false;
  #events = new Uint8Array(MAX_EVENTS * LAYOUT.EPOLL_EVENT);
  #eventsView = new DataView(this.#events.buffer);
  #ctl = new Uint8Array(LAYOUT.EPOLL_EVENT);
  #ctlView = new DataView(this.#ctl.buffer);
  #registered = new Set<number>();

  private constructor(libc: Libc, epfd: number, wakefd: number) {
    this.#libc = libc;
    this.#epfd = epfd;
    this.#wakefd = wakefd;
  }

  /** The process's poller for `libc` (made on first use); throws if epoll cannot be had. */
  static of(libc: Libc): Poller {
    let p = pollers.get(libc);
    if (!p) {
      const epfd = libc.sym.epoll_create1(C.EPOLL_CLOEXEC);
      if (epfd < 0) throw new Error(`epoll_create1: ${libc.describe(libc.errno())}`);
      const wakefd = libc.sym.eventfd(0, C.EFD_NONBLOCK | C.EFD_CLOEXEC);
      if (wakefd < 0) {
        libc.sym.close(epfd);
        throw new Error(`eventfd: ${libc.describe(libc.errno())}`);
      }
      p = new Poller(libc, epfd, wakefd);
      p.#control(C.EPOLL_CTL_ADD, wakefd, C.EPOLLIN, WAKE);
      pollers.set(libc, p);
    }
    return p;
  }

  /** Resolves once `fd` is ready as asked (or has an error), or when `cancel(fd)` is called. */
  wait(fd: number, readiness: Readiness): Promise<void> {
    const w = this.#watches.get(fd) ?? { in: [], out: [] };
    this.#watches.set(fd, w);
    const done = new Promise<void>((resolve) => w[readiness].push(resolve));
    this.#arm(fd, w);
    if (!this.#running) void this.#loop();
    return done;
  }

  /** Ends every wait on `fd` and forgets it: call before closing `fd`. */
  cancel(fd: number): void {
    const w = this.#watches.get(fd);
    this.#watches.delete(fd);
    if (this.#registered.delete(fd)) this.#control(C.EPOLL_CTL_DEL, fd, 0, fd);
    for (const resolve of [...(w?.in ?? []), ...(w?.out ?? [])]) resolve();
    if (this.#watches.size === 0 && this.#running) this.#wake();
  }

  /** Watches `fd` (one-shot) for what its waiters want. */
  #arm(fd: number, w: Watch): void {
    const events = (w.in.length > 0 ? C.EPOLLIN : 0) | (w.out.length > 0 ? C.EPOLLOUT : 0);
    if (events === 0) return;
    const op = this.#registered.has(fd) ? C.EPOLL_CTL_MOD : C.EPOLL_CTL_ADD;
    this.#registered.add(fd);
    if (this.#control(op, fd, events | C.EPOLLONESHOT, fd)) return;
    // (MOD of an fd the set lost, or ADD of one it still has: the other operation)
    const other = op === C.EPOLL_CTL_MOD ? C.EPOLL_CTL_ADD : C.EPOLL_CTL_MOD;
    if (this.#control(other, fd, events | C.EPOLLONESHOT, fd)) return;
    // cannot be watched at all: wake its waiters, whose next call reports the socket's error
    this.#watches.delete(fd);
    this.#registered.delete(fd);
    for (const resolve of [...w.in.splice(0), ...w.out.splice(0)]) resolve();
  }

  /** One `epoll_ctl`; false if the kernel refused it. */
  #control(op: number, fd: number, events: number, data: number): boolean {
    this.#ctlView.setUint32(0, events, true);
    this.#ctlView.setBigInt64(4, BigInt(data), true);
    return this.#libc.sym.epoll_ctl(this.#epfd, op, fd, this.#ctl) === 0;
  }

  /** Writes the wake eventfd: the pending `epoll_wait` returns. */
  #wake(): void {
    this.#libc.sym.write(this.#wakefd, ONE, 8n);
  }

  /** Waits for events while anybody waits; one `epoll_wait` in flight at a time. */
  async #loop(): Promise<void> {
    this.#running = true;
    try {
      let failures = 0;
      while (this.#watches.size > 0) {
        const n = await this.#libc.sym.epollWait(this.#epfd, this.#events, MAX_EVENTS, -1);
        if (n < 0) {
          // EINTR (a signal on that thread); anything else repeats, and must not spin forever:
          // then every waiter is woken, and its socket's next call reports what is wrong
          if (++failures > 100) {
            for (const w of this.#watches.values()) {
              for (const resolve of [...w.in.splice(0), ...w.out.splice(0)]) resolve();
            }
            this.#watches.clear();
            return;
          }
          continue;
        }
        failures = 0;
        for (let i = 0; i < n; i++) this.#fire(i);
      }
    } finally {
      this.#running = false;
    }
  }

  /** Resolves the waiters event `i` is for, and re-arms the fd for those still waiting. */
  #fire(i: number): void {
    const at = i * LAYOUT.EPOLL_EVENT;
    const events = this.#eventsView.getUint32(at, true);
    const fd = Number(this.#eventsView.getBigInt64(at + 4, true));
    if (fd === WAKE) {
      this.#libc.sym.read(this.#wakefd, DRAIN, 8n);
      return;
    }
    const w = this.#watches.get(fd);
    if (!w) return; // cancelled meanwhile
    const failed = (events & (C.EPOLLERR | C.EPOLLHUP)) !== 0;
    const ready: (() => void)[] = [];
    if (failed || events & C.EPOLLIN) ready.push(...w.in.splice(0));
    if (failed || events & C.EPOLLOUT) ready.push(...w.out.splice(0));
    if (w.in.length === 0 && w.out.length === 0) this.#watches.delete(fd);
    else this.#arm(fd, w);
    for (const resolve of ready) resolve();
  }
}

const pollers = new WeakMap<Libc, Poller>();
const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);
const DRAIN = new Uint8Array(8);
