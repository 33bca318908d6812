/**
 * The client's sockets: one UDP socket per (worker, server) pair, each with an async-iterator
 * receive loop that routes replies to whoever is waiting for that request id — and only when
 * they come from the server the request went to. A socket per pair gives every server its own
 * kernel receive buffer on every worker, so one server's burst cannot crowd out another's.
 *
 * @module
 */

import { seal } from "../wire/auth.ts";
import { datagrams } from "./datagrams.ts";
import { decode, encode, NO_TOKEN, type Packet } from "../wire/packet.ts";

/** A resolved server address. */
export interface ServerAddr {
  /** As written in the servers file, for messages. */
  label: string;
  /** Numeric IP address. */
  hostname: string;
  port: number;
  family: "ipv4" | "ipv6";
}

/**
 * Receives the replies to one request id. The packet's byte fields are views into the
 * receive buffer, valid only during the call: copy what is kept (see `detach`).
 */
export type ReplyHandler = (p: Packet) => void;

/** A copy of `p` that owns its bytes, for replies kept past the handler call. */
export function detach(p: Packet): Packet {
  const r = decode(encode(p));
  if (!r.ok) throw new Error("re-decoding an accepted packet failed");
  return r.packet;
}

interface Pending {
  server: number;
  onReply: ReplyHandler;
}

/** Counters of datagrams the endpoint dropped. */
export interface EndpointStats {
  malformed: number;
  stray: number;
}

/** The client side of the wire: sockets, request ids and reply routing. */
export class ClientEndpoint {
  /** Datagrams dropped because they were undecodable or matched no request. */
  readonly stats: EndpointStats = { malformed: 0, stray: 0 };
  #servers: ServerAddr[];
  /** `#sockets[worker][server]`. */
  #sockets: Deno.DatagramConn[][] = [];
  #pending = new Map<number, Pending>();
  #nextId = Math.floor(Math.random() * 0xffffffff);
  #loops: Promise<void>[] = [];
  /** Address-validation token per server, as last handed out by its RETRY. */
  #tokens: Uint8Array[];
  #rtts: (number | undefined)[] = [];

  /** Where replies go that match no id opened here (the fetch engine's own ids). */
  #fallback: ((server: number, p: Packet) => void) | undefined;

  /** Shared key (`--secret-file`): every request is sealed with it. */
  #key: Uint8Array | undefined;

  /**
   * Opens `workers` sockets for each server, bound to the server's address family. With `key`,
   * every request sent carries an authentication trailer.
   */
  constructor(servers: ServerAddr[], workers: number, key?: Uint8Array) {
    this.#servers = servers;
    this.#key = key;
    this.#tokens = servers.map(() => NO_TOKEN);
    for (let w = 0; w < workers; w++) {
      this.#sockets.push(servers.map((s, server) => {
        const hostname = s.family === "ipv4" ? "0.0.0.0" : "::";
        const sock = Deno.listenDatagram({ hostname, port: 0, transport: "udp" });
        this.#loops.push(this.#receiveLoop(sock, server));
        return sock;
      }));
    }
  }

  /** Number of workers (sockets per family). */
  get workers(): number {
    return this.#sockets.length;
  }

  /** The token to put in requests to `server` (all zero until it sent a RETRY). */
  token(server: number): Uint8Array {
    return this.#tokens[server];
  }

  /** Sets the token to put in requests to `server` (as handed out by its RETRY). */
  setToken(server: number, token: Uint8Array): void {
    this.#tokens[server] = token;
  }

  /** Records a round trip to `server` measured by a request-reply exchange (ms). */
  noteRtt(server: number, ms: number): void {
    const old = this.#rtts[server];
    this.#rtts[server] = old === undefined ? ms : Math.min(old, ms);
  }

  /** The smallest round trip measured to `server` so far (ms), if any. */
  rttOf(server: number): number | undefined {
    return this.#rtts[server];
  }

  /** Allocates a request id whose replies from `server` go to `onReply`. */
  open(server: number, onReply: ReplyHandler): number {
    let id: number;
    do {
      id = this.#nextId;
      this.#nextId = (this.#nextId + 1) >>> 0;
    } while (this.#pending.has(id));
    this.#pending.set(id, { server, onReply });
    return id;
  }

  /**
   * Routes every reply that matches no id opened with `open` to `handler`, with the index of
   * the server it came from (datagrams from anywhere else are still dropped). The fetch engine
   * allocates its own request ids and checks them itself.
   */
  routeOthers(handler: ((server: number, p: Packet) => void) | undefined): void {
    this.#fallback = handler;
  }

  /** Stops routing replies for `id`: late ones are counted as stray. */
  close(id: number): void {
    this.#pending.delete(id);
  }

  /** Sends `bytes` to `server` from `worker`'s socket; false if the send failed. */
  async send(worker: number, server: number, bytes: Uint8Array): Promise<boolean> {
    const s = this.#servers[server];
    const sock = this.#sockets[worker][server];
    if (this.#key) {
      bytes = seal(bytes, this.#key, Date.now(), crypto.getRandomValues(new Uint8Array(8)));
    }
    try {
      await sock.send(bytes, { transport: "udp", hostname: s.hostname, port: s.port });
      return true;
    } catch {
      return false; // e.g. ICMP unreachable reported on a previous send: same as a loss
    }
  }

  /** Closes every socket and waits for the receive loops to end. */
  async shutdown(): Promise<void> {
    for (const row of this.#sockets) for (const s of row) s.close();
    this.#pending.clear();
    await Promise.allSettled(this.#loops);
  }

  /** Every socket talks to one server: its datagrams are checked against that one. */
  async #receiveLoop(sock: Deno.DatagramConn, server: number): Promise<void> {
    try {
      for await (const [data, addr] of datagrams(sock)) this.#route(data, addr, server);
    } catch {
      // the socket was closed (shutdown) or failed: either way the loop is over
    }
  }

  #route(data: Uint8Array, from: Deno.NetAddr, server: number): void {
    const r = decode(data);
    if (!r.ok) {
      this.stats.malformed++;
      return;
    }
    const p = this.#pending.get(r.packet.requestId);
    if (!p && this.#fallback) {
      const s = this.#servers[server];
      if (s.port !== from.port || !sameHost(s.hostname, from.hostname)) this.stats.stray++;
      else this.#fallback(server, r.packet);
      return;
    }
    const s = p && this.#servers[p.server];
    if (!p || !s || s.port !== from.port || !sameHost(s.hostname, from.hostname)) {
      this.stats.stray++;
      return;
    }
    // a RETRY proves nothing yet, but its token validates every later request to that server
    if (r.packet.type === "retry") this.#tokens[p.server] = r.packet.token.slice();
    p.onReply(r.packet);
  }
}

function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  // IPv6 has several spellings of one address; compare canonical forms
  return a.includes(":") && b.includes(":") && canonicalV6(a) === canonicalV6(b);
}

function canonicalV6(h: string): string {
  try {
    return new URL(`http://[${h}]/`).hostname;
  } catch {
    return h;
  }
}
