/**
 * A UDP relay for tests: forwards datagrams between clients and one server, and lets a test
 * drop, count or react to them — a stand-in for netem, which this kernel lacks.
 *
 * @module
 */

import { seededRandom } from "../lib/sim/prng.ts";

/** mulberry32: a tiny seeded PRNG, so a loss pattern (or test data) can be replayed. */
export const mulberry32: (seed: number) => () => number = seededRandom;

/** Which way a datagram travels. */
export type Direction = "to_server" | "to_client";

/** Decides the fate of the n-th datagram (0-based, per direction): true drops it. */
export type DropRule = (dir: Direction, n: number, data: Uint8Array) => boolean;

/** Rewrites a datagram in place before it is forwarded (corruption tests). */
export type Mutator = (dir: Direction, n: number, data: Uint8Array) => void;

/** Further impairments, each decided per datagram (n is 0-based, per direction). */
export interface Impairments {
  /** True: forward the datagram twice. */
  duplicate?: (dir: Direction, n: number) => boolean;
  /**
   * True: hold the datagram back and forward it after the next one in the same direction
   * (or after `HOLD_MS` if none comes), so the two arrive swapped.
   */
  holdBack?: (dir: Direction, n: number) => boolean;
}

/** Longest a held-back datagram waits for a successor to overtake it. */
export const HOLD_MS = 5;

/** Relays between clients and `127.0.0.1:<targetPort>`, one upstream socket per client. */
export class UdpRelay {
  /** Port the relay listens on (give this to the client). */
  readonly port: number;
  /** Datagrams seen per direction. */
  readonly seen: Record<Direction, number> = { to_server: 0, to_client: 0 };
  #front: Deno.DatagramConn;
  #target: number;
  #drop: DropRule;
  #mutate: Mutator | undefined;
  #upstreams = new Map<string, Deno.DatagramConn>();
  #loops: Promise<void>[] = [];
  #watchers: { dir: Direction; n: number; resolve: () => void }[] = [];
  #more: Impairments;
  #held: Partial<Record<Direction, () => Promise<void>>> = {};
  #holdTimers = new Set<ReturnType<typeof setTimeout> | undefined>();
  /** While true, every datagram in both directions is dropped (a blackhole). */
  blackhole = false;

  /** Starts relaying to `targetPort`; `drop` decides losses (default: none), `mutate` may
   * rewrite what is forwarded, `more` adds duplication and reordering. */
  constructor(
    targetPort: number,
    drop: DropRule = () => false,
    mutate?: Mutator,
    more: Impairments = {},
  ) {
    this.#mutate = mutate;
    this.#more = more;
    this.#front = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    this.port = (this.#front.addr as Deno.NetAddr).port;
    this.#target = targetPort;
    this.#drop = drop;
    this.#loops.push(this.#frontLoop());
  }

  /** Resolves once `n` datagrams have travelled in direction `dir`. */
  after(dir: Direction, n: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.seen[dir] >= n) return resolve();
      this.#watchers.push({ dir, n, resolve });
    });
  }

  /** Stops relaying and closes every socket. */
  async close(): Promise<void> {
    for (const t of this.#holdTimers) clearTimeout(t);
    this.#front.close();
    for (const u of this.#upstreams.values()) u.close();
    await Promise.allSettled(this.#loops);
  }

  #count(dir: Direction, data: Uint8Array): number {
    const n = this.seen[dir]++;
    this.#watchers = this.#watchers.filter((w) => {
      if (w.dir !== dir || this.seen[dir] < w.n) return true;
      w.resolve();
      return false;
    });
    if (this.blackhole || this.#drop(dir, n, data)) return -1;
    this.#mutate?.(dir, n, data);
    return n;
  }

  /** Forwards one datagram with `send`, applying duplication and reordering. */
  async #forward(dir: Direction, n: number, send: () => Promise<void>): Promise<void> {
    const held = this.#held[dir];
    if (this.#more.holdBack?.(dir, n) && !held) {
      let timer: ReturnType<typeof setTimeout> | undefined = undefined;
      const release = async () => {
        clearTimeout(timer);
        this.#holdTimers.delete(timer);
        if (this.#held[dir] !== release) return;
        delete this.#held[dir];
        await send();
      };
      this.#held[dir] = release;
      timer = setTimeout(() => void release(), HOLD_MS);
      this.#holdTimers.add(timer);
      return;
    }
    await send();
    if (this.#more.duplicate?.(dir, n)) await send();
    if (held) await held();
  }

  async #frontLoop(): Promise<void> {
    try {
      for await (const [data, addr] of this.#front) {
        const client = addr as Deno.NetAddr;
        const n = this.#count("to_server", data);
        if (n < 0) continue;
        const up = this.#upstream(client);
        const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: this.#target };
        await this.#forward("to_server", n, () => up.send(data, to).then(() => {}, () => {}));
      }
    } catch {
      // closed
    }
  }

  #upstream(client: Deno.NetAddr): Deno.DatagramConn {
    const key = `${client.hostname}:${client.port}`;
    let up = this.#upstreams.get(key);
    if (up) return up;
    up = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    this.#upstreams.set(key, up);
    this.#loops.push(this.#backLoop(up, client));
    return up;
  }

  async #backLoop(up: Deno.DatagramConn, client: Deno.NetAddr): Promise<void> {
    try {
      for await (const [data] of up) {
        const n = this.#count("to_client", data);
        if (n < 0) continue;
        await this.#forward(
          "to_client",
          n,
          () => this.#front.send(data, client).then(() => {}, () => {}),
        );
      }
    } catch {
      // closed
    }
  }
}
