/**
 * A UDP relay for tests: forwards datagrams between clients and one server, and lets a test
 * drop, count or react to them — a stand-in for netem, which this kernel lacks.
 *
 * @module
 */

/** mulberry32: a tiny seeded PRNG, so a loss pattern (or test data) can be replayed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Which way a datagram travels. */
export type Direction = "to_server" | "to_client";

/** Decides the fate of the n-th datagram (0-based, per direction): true drops it. */
export type DropRule = (dir: Direction, n: number, data: Uint8Array) => boolean;

/** Rewrites a datagram in place before it is forwarded (corruption tests). */
export type Mutator = (dir: Direction, n: number, data: Uint8Array) => void;

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

  /** Starts relaying to `targetPort`; `drop` decides losses (default: none), `mutate` may
   * rewrite what is forwarded. */
  constructor(targetPort: number, drop: DropRule = () => false, mutate?: Mutator) {
    this.#mutate = mutate;
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
    this.#front.close();
    for (const u of this.#upstreams.values()) u.close();
    await Promise.allSettled(this.#loops);
  }

  #count(dir: Direction, data: Uint8Array): boolean {
    const n = this.seen[dir]++;
    this.#watchers = this.#watchers.filter((w) => {
      if (w.dir !== dir || this.seen[dir] < w.n) return true;
      w.resolve();
      return false;
    });
    if (this.#drop(dir, n, data)) return true;
    this.#mutate?.(dir, n, data);
    return false;
  }

  async #frontLoop(): Promise<void> {
    try {
      for await (const [data, addr] of this.#front) {
        const client = addr as Deno.NetAddr;
        if (this.#count("to_server", data)) continue;
        const up = this.#upstream(client);
        await up.send(data, { transport: "udp", hostname: "127.0.0.1", port: this.#target })
          .catch(() => {});
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
        if (this.#count("to_client", data)) continue;
        await this.#front.send(data, client).catch(() => {});
      }
    } catch {
      // closed
    }
  }
}
