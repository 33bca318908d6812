/**
 * Named swarm scenarios for tests and benches, built from the shape of issue 16's scenario F:
 * one 128 MiB file, a seed server with 8 MiB/s of upload, fetchers with 8 MiB/s of upload each
 * and unlimited download. With N = 8 the bound is F/u_s = 16 s; with N = 200 or 1000 the swarm's
 * capacity N·F/(u_s + Σu_i) is within 0.5 % of it too, so both the seed and every fetcher's
 * upload must be used almost fully: the hardest shape for a policy.
 *
 * @module
 */

import { seededRandom } from "../prng.ts";
import type { SeedMode } from "../../swarm/swarm_planner.ts";
import type { LiarKind, PeerSpec, SwarmScenario } from "./swarm_sim.ts";

/** Bytes in a MiB. */
export const MiB = 1 << 20;

/** What a flash crowd is made of (everything has scenario F's value by default). */
export interface CrowdOptions {
  /** Fetchers. */
  peers: number;
  /** Seed of the run (default 1). */
  seed?: number;
  /** File size, bytes (default 128 MiB). */
  fileBytes?: number;
  /** Piece size, bytes (default 1 MiB, the project's default). */
  pieceBytes?: number;
  /** Seed coordination (default "server"). */
  seedMode?: SeedMode;
  /** Seed server upload, bytes per second (default 8 MiB/s). */
  serverUpBytesPerSec?: number;
  /** Each fetcher's upload, bytes per second (default 8 MiB/s). */
  peerUpBytesPerSec?: number;
  /** Anything else of the scenario (peer set sizes, delays, …). */
  extra?: Partial<SwarmScenario>;
}

/** N fetchers all arriving at once (scenario F's shape by default). */
export function flashCrowd(o: CrowdOptions): SwarmScenario {
  const up = o.peerUpBytesPerSec ?? 8 * MiB;
  return {
    seed: o.seed ?? 1,
    fileBytes: o.fileBytes ?? 128 * MiB,
    pieceBytes: o.pieceBytes ?? MiB,
    serverUpBytesPerSec: o.serverUpBytesPerSec ?? 8 * MiB,
    peers: Array.from({ length: o.peers }, (): PeerSpec => ({ upBytesPerSec: up })),
    seedMode: o.seedMode ?? "server",
    ...o.extra,
  };
}

/** How the crowd churns. */
export interface ChurnOptions extends CrowdOptions {
  /** Arrivals spread uniformly over [0, this) ms (default 10 000). */
  arriveOverMs?: number;
  /** Share of fetchers that leave before they are done (default 0.2). */
  leaveShare?: number;
  /**
   * A leaver leaves this long after it arrived, ms, drawn uniformly (default [2000, 12000]):
   * mid-download, since one takes about 16 s.
   */
  leaveAfterMs?: [number, number];
}

/** Staggered arrivals and a share of fetchers leaving mid-download. */
export function churnCrowd(o: ChurnOptions): SwarmScenario {
  const sc = flashCrowd(o);
  const random = seededRandom((o.seed ?? 1) * 7919 + 17);
  const over = o.arriveOverMs ?? 10_000;
  const [lo, hi] = o.leaveAfterMs ?? [2000, 12_000];
  const leavers = Math.round(sc.peers.length * (o.leaveShare ?? 0.2));
  sc.peers.forEach((p, i) => {
    p.arriveMs = Math.floor(random() * over);
    if (i < leavers) p.leaveMs = p.arriveMs + lo + Math.floor(random() * (hi - lo));
  });
  return sc;
}

/** `sc` with `count` more fetchers that lie in the given way, arriving with the others. */
export function withLiars(sc: SwarmScenario, count: number, liar: LiarKind): SwarmScenario {
  const up = sc.peers[0]?.upBytesPerSec ?? 8 * MiB;
  const liars = Array.from({ length: count }, (): PeerSpec => ({ upBytesPerSec: up, liar }));
  return { ...sc, peers: [...sc.peers, ...liars] };
}
