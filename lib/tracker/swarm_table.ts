/**
 * The tracker's memory: swarms (by info-hash) and their peers, with expiry, caps and the
 * random choice of peers handed out. Pure: the clock comes in as an argument (ms), randomness
 * is injected.
 *
 * A peer is its address as the tracker saw it and the port it announced (the IP field of an
 * announce is never used, see `tracker_core.ts`), so a peer can only change or remove its own
 * entry. Each swarm keeps four lists (IPv4 / IPv6 × leechers / seeders) with swap-removal, so
 * adding, removing and choosing peers cost O(1) per peer touched, never a pass over the swarm.
 *
 * @module
 */

import type { AnnounceEvent, ScrapeEntry } from "./bep15_packet.ts";

/** Caps and timings of a {@linkcode SwarmTable}. */
export interface SwarmLimits {
  /** Swarms at most; an announce for one more is refused. */
  readonly maxSwarms: number;
  /** Peers listed per swarm at most; beyond, an announcer gets peers but is not listed. */
  readonly maxPeersPerSwarm: number;
  /** Peers listed in all swarms at most (the same rule). */
  readonly maxPeers: number;
  /**
   * Peers listed per swarm from one address at most (an IPv6 /64 counts as one address), the
   * same rule beyond; 0: no such cap.
   */
  readonly maxPeersPerAddress: number;
  /** Peers handed out when an announce asks for the default (`num_want` -1). */
  readonly defaultNumWant: number;
  /** Peers handed out at most, whatever an announce asks. */
  readonly maxNumWant: number;
  /** Announce interval (s) while a swarm has leechers: peers meet within seconds. */
  readonly downloadingIntervalS: number;
  /** Announce interval (s) when everyone in the swarm is a seeder. */
  readonly seededIntervalS: number;
  /** A peer expires this long (s) after twice the interval it was given, unless it announces. */
  readonly expirySlackS: number;
  /** How long (ms) a swarm left without peers keeps its completed count before it is dropped. */
  readonly emptySwarmTtlMs: number;
}

/**
 * Default caps and timings, with the reasons:
 * - 10 s while a swarm downloads: a peer that joins learns of the others at its first announce
 *   and they of it within 10 s, and the load is one announce per peer per 10 s (100 000 peers:
 *   10 000 announces/s). 60 s when everyone seeds: nobody needs new peers then (a leecher that
 *   joins gets the seeders at once and they need not call it), so the tracker can rest.
 * - a peer expires after 2 intervals + 15 s without an announce: one lost announce (UDP) does
 *   not drop it, a vanished peer is handed out for at most 35 s (downloading) or 135 s.
 * - 50 peers per reply (BitTorrent's usual default): 320 bytes over IPv4, 920 over IPv6, within
 *   the 1232 bytes an IPv6 path always carries unfragmented.
 * - 10 000 swarms, 5 000 peers per swarm, 250 000 peers in all: about 350 bytes per peer were
 *   measured (bench/tracker_load.ts: 100 000 peers add ~35 MB to the process), so ~90 MB at most;
 *   peers from as many addresses add an entry each to their swarm's per-address count (tens of
 *   bytes: ~100 MB at most).
 * - 32 peers per address in a swarm: a machine runs one peer per swarm, a few on a test bench,
 *   and peers behind one NAT address are unreachable through it anyway; without a cap one host
 *   announcing ports at the source rate fills a swarm's 5 000 places in under a minute, and
 *   every peer list handed out then names mostly that host. An IPv6 /64 is one address: its
 *   owner has 2^64 of them.
 */
export const DEFAULT_SWARM_LIMITS: SwarmLimits = {
  maxSwarms: 10_000,
  maxPeersPerSwarm: 5_000,
  maxPeers: 250_000,
  maxPeersPerAddress: 32,
  defaultNumWant: 50,
  maxNumWant: 50,
  downloadingIntervalS: 10,
  seededIntervalS: 60,
  expirySlackS: 15,
  emptySwarmTtlMs: 10 * 60_000,
};

/** One announce, as the table needs it. */
export interface PeerAnnounce {
  /** The swarm's key (the info-hash in hex). */
  readonly infoHash: string;
  /** The announcer's source address: 4 bytes (IPv4) or 16 (IPv6). */
  readonly address: Uint8Array;
  /** The port it announced (0: it takes no connections, and is not listed). */
  readonly port: number;
  readonly event: AnnounceEvent;
  /** Bytes it still lacks (0: a seeder). */
  readonly left: bigint;
  /** Peers it wants; negative: the default. */
  readonly numWant: number;
}

/** What an announce gets. */
export type AnnounceOutcome =
  | {
    readonly ok: true;
    /** Seconds until its next announce. */
    readonly interval: number;
    readonly seeders: number;
    readonly leechers: number;
    /**
     * Compact peers of the announcer's family (6 or 18 bytes each), never itself. A view into
     * the table's scratch buffer, valid until its next announce: encode the reply before that.
     */
    readonly peers: Uint8Array;
    /** Whether the announcer is (still) in the swarm's list: not after stopped, port 0, a cap. */
    readonly listed: boolean;
  }
  | { readonly ok: false; readonly why: "swarms_full" };

const IPV4 = 0;
const IPV6 = 1;

/** A listed peer. Its compact form is its key; `list` is family × 2 + (seeder ? 1 : 0). */
interface Peer {
  readonly key: string;
  list: number;
  /** Index in `swarm.lists[list]`. */
  slot: number;
  expiresAt: number;
}

class Swarm {
  readonly peers = new Map<string, Peer>();
  /** Listed peers per address (see `hostOf`). */
  readonly perHost = new Map<string, number>();
  /** IPv4 leechers, IPv4 seeders, IPv6 leechers, IPv6 seeders. */
  readonly lists: Peer[][] = [[], [], [], []];
  completed = 0;
  emptySince = 0;

  constructor(readonly infoHash: string) {}

  get seeders(): number {
    return this.lists[1].length + this.lists[3].length;
  }

  get leechers(): number {
    return this.lists[0].length + this.lists[2].length;
  }
}

/** Swarms and their peers (see the module comment). */
export class SwarmTable {
  readonly limits: SwarmLimits;
  #random: () => number;
  #swarms = new Map<string, Swarm>();
  /** Swarms without peers, oldest first: dropped after their TTL, or first when room is needed. */
  #empty = new Set<Swarm>();
  #peers = 0;
  #seeders = 0;
  /** Where chosen peers are written (see `AnnounceOutcome.peers`), sized for `maxNumWant`. */
  #scratch: Uint8Array;

  /** `random` returns numbers in [0, 1) (default Math.random); tests pass a seeded one. */
  constructor(limits: SwarmLimits = DEFAULT_SWARM_LIMITS, random: () => number = Math.random) {
    this.limits = limits;
    this.#random = random;
    this.#scratch = new Uint8Array(Math.max(0, limits.maxNumWant) * 18);
  }

  /** Swarms held, with or without peers. */
  get swarmCount(): number {
    return this.#swarms.size;
  }

  /** Peers listed in all swarms. */
  get peerCount(): number {
    return this.#peers;
  }

  /** Seeders listed in all swarms. */
  get seederCount(): number {
    return this.#seeders;
  }

  /** Applies one announce at `now` and answers it. */
  announce(a: PeerAnnounce, now: number): AnnounceOutcome {
    const family = a.address.length === 4 ? IPV4 : IPV6;
    const key = compactKey(a.address, a.port);
    let swarm = this.#swarms.get(a.infoHash);
    const existing = swarm?.peers.get(key);
    if (a.event === "stopped") {
      if (swarm && existing) this.#remove(swarm, existing, now);
      return this.#outcome(swarm, false, false, EMPTY);
    }
    const seeder = a.left === 0n || a.event === "completed";
    const wasSeeder = existing !== undefined && existing.list % 2 === 1;
    let peer = existing;
    if (peer) this.#move(swarm!, peer, family * 2 + (seeder ? 1 : 0));
    else if (a.port !== 0 && this.#roomFor(swarm, hostOf(key))) {
      swarm ??= this.#create(a.infoHash);
      if (!swarm) return { ok: false, why: "swarms_full" };
      peer = this.#insert(swarm, key, family * 2 + (seeder ? 1 : 0));
    }
    if (swarm && a.event === "completed" && !wasSeeder) swarm.completed++;
    const interval = this.#interval(swarm, peer === undefined && !seeder);
    if (peer) peer.expiresAt = now + (2 * interval + this.limits.expirySlackS) * 1000;
    const want = a.numWant < 0
      ? this.limits.defaultNumWant
      : Math.min(a.numWant, this.limits.maxNumWant);
    const peers = swarm && want > 0 ? this.#choose(swarm, family, seeder, peer, want) : EMPTY;
    return this.#outcome(swarm, peer !== undefined, !seeder && peer === undefined, peers, interval);
  }

  /** A swarm's counts (zeros for a swarm the table does not hold). */
  scrape(infoHash: string): ScrapeEntry {
    const s = this.#swarms.get(infoHash);
    return s
      ? { seeders: s.seeders, completed: s.completed, leechers: s.leechers }
      : { seeders: 0, completed: 0, leechers: 0 };
  }

  /**
   * Removes the peers whose time ran out by `now`, and the swarms that have been empty longer
   * than their TTL. Returns the number of peers removed.
   */
  sweep(now: number): number {
    let removed = 0;
    for (const swarm of this.#swarms.values()) {
      for (const p of swarm.peers.values()) {
        if (p.expiresAt <= now) (this.#remove(swarm, p, now), removed++);
      }
    }
    for (const swarm of this.#empty) {
      if (now - swarm.emptySince < this.limits.emptySwarmTtlMs) break; // oldest first
      this.#drop(swarm);
    }
    return removed;
  }

  #outcome(
    swarm: Swarm | undefined,
    listed: boolean,
    unlistedLeecher: boolean,
    peers: Uint8Array,
    interval = this.#interval(swarm, false),
  ): AnnounceOutcome {
    return {
      ok: true,
      interval,
      seeders: swarm?.seeders ?? 0,
      leechers: (swarm?.leechers ?? 0) + (unlistedLeecher ? 1 : 0),
      peers,
      listed,
    };
  }

  /** The short interval while anyone (an unlisted announcer too) downloads, else the long one. */
  #interval(swarm: Swarm | undefined, unlistedLeecher: boolean): number {
    const downloading = unlistedLeecher || (swarm !== undefined && swarm.leechers > 0);
    return downloading ? this.limits.downloadingIntervalS : this.limits.seededIntervalS;
  }

  #roomFor(swarm: Swarm | undefined, host: string): boolean {
    const perAddress = this.limits.maxPeersPerAddress;
    return this.#peers < this.limits.maxPeers &&
      (swarm?.peers.size ?? 0) < this.limits.maxPeersPerSwarm &&
      (perAddress <= 0 || (swarm?.perHost.get(host) ?? 0) < perAddress);
  }

  /** A new swarm; at the cap, the oldest empty one makes room, if there is one. */
  #create(infoHash: string): Swarm | undefined {
    if (this.#swarms.size >= this.limits.maxSwarms) {
      const oldest = this.#empty.values().next();
      if (oldest.done) return undefined;
      this.#drop(oldest.value);
    }
    const swarm = new Swarm(infoHash);
    this.#swarms.set(infoHash, swarm);
    return swarm;
  }

  #drop(swarm: Swarm): void {
    this.#empty.delete(swarm);
    this.#swarms.delete(swarm.infoHash);
  }

  #insert(swarm: Swarm, key: string, list: number): Peer {
    const peer: Peer = { key, list, slot: swarm.lists[list].length, expiresAt: 0 };
    swarm.lists[list].push(peer);
    swarm.peers.set(key, peer);
    const host = hostOf(key);
    swarm.perHost.set(host, (swarm.perHost.get(host) ?? 0) + 1);
    this.#empty.delete(swarm);
    this.#peers++;
    if (list % 2 === 1) this.#seeders++;
    return peer;
  }

  #remove(swarm: Swarm, peer: Peer, now: number): void {
    this.#unlink(swarm, peer);
    swarm.peers.delete(peer.key);
    const host = hostOf(peer.key);
    const left = (swarm.perHost.get(host) ?? 1) - 1;
    if (left > 0) swarm.perHost.set(host, left);
    else swarm.perHost.delete(host);
    this.#peers--;
    if (peer.list % 2 === 1) this.#seeders--;
    if (swarm.peers.size === 0) {
      swarm.emptySince = now;
      this.#empty.add(swarm);
    }
  }

  /** Puts `peer` in list `to` (a leecher becoming a seeder, or the reverse). */
  #move(swarm: Swarm, peer: Peer, to: number): void {
    if (peer.list === to) return;
    this.#seeders += (to % 2) - (peer.list % 2);
    this.#unlink(swarm, peer);
    peer.list = to;
    peer.slot = swarm.lists[to].length;
    swarm.lists[to].push(peer);
  }

  /** Takes `peer` out of its list: the last one takes its slot. */
  #unlink(swarm: Swarm, peer: Peer): void {
    const list = swarm.lists[peer.list];
    const last = list.pop()!;
    if (last !== peer) {
      list[peer.slot] = last;
      last.slot = peer.slot;
    }
  }

  /**
   * Up to `want` random peers of `family`, never `self`. A seeder gets leechers only (it has
   * nothing to fetch). A leecher gets seeders for up to half the places, leechers for the rest,
   * and more seeders if leechers run short: seeders are where the pieces surely are, leechers
   * are the upload capacity a swarm grows on.
   */
  #choose(
    swarm: Swarm,
    family: number,
    seeder: boolean,
    self: Peer | undefined,
    want: number,
  ): Uint8Array {
    const leechers = swarm.lists[family * 2];
    const seeders = swarm.lists[family * 2 + 1];
    const chosen: Peer[] = [];
    if (seeder) this.#sample(leechers, 0, want, self, chosen);
    else {
      const next = this.#sample(seeders, 0, Math.ceil(want / 2), self, chosen);
      this.#sample(leechers, 0, want - chosen.length, self, chosen);
      this.#sample(seeders, next, want - chosen.length, self, chosen);
    }
    const size = family === IPV4 ? 6 : 18;
    const out = this.#scratch;
    for (let i = 0; i < chosen.length; i++) {
      const key = chosen[i].key;
      for (let j = 0; j < size; j++) out[i * size + j] = key.charCodeAt(j);
    }
    // a view, not subarray: see bep15_packet.ts on what each costs in Deno
    return new Uint8Array(out.buffer, 0, chosen.length * size);
  }

  /**
   * Partial Fisher–Yates over `list` from index `from`: each step swaps a random later entry
   * into place and takes it (unless it is `self`), until `want` are taken. The entries before
   * the returned index are the ones drawn, so a second call from there draws others. The
   * list's order carries no meaning, so shuffling it in place costs nothing but slot updates.
   */
  #sample(list: Peer[], from: number, want: number, self: Peer | undefined, out: Peer[]): number {
    let i = from;
    for (; i < list.length && want > 0; i++) {
      const j = i + Math.floor(this.#random() * (list.length - i));
      const p = list[j];
      list[j] = list[i];
      list[j].slot = j;
      list[i] = p;
      p.slot = i;
      if (p !== self) (out.push(p), want--); // (an unlisted announcer is in no list)
    }
    return i;
  }
}

const EMPTY = new Uint8Array(0);

/** A peer's key: its compact form (address bytes, then the port) as a string of char codes. */
function compactKey(address: Uint8Array, port: number): string {
  let key = "";
  for (let i = 0; i < address.length; i++) key += String.fromCharCode(address[i]);
  return key + String.fromCharCode(port >> 8, port & 0xff);
}

/** The address part of a peer's key that the per-address cap counts: IPv4, or an IPv6 /64. */
function hostOf(key: string): string {
  return key.length === 6 ? key.slice(0, 4) : key.slice(0, 8);
}
