/**
 * Swarm bench: a flash crowd of fetchers (1000 by default) in scenario F's shape, run through
 * the simulator; prints the last finish as a ratio to the distribution bound, what the seed
 * server sent as a multiple of the file, and the wall time of the run.
 *
 *   deno run bench/swarm_sim.ts [--peers 1000] [--piece-kib 256] [--mode server]
 *     [--seed 1] [--server-mibps 8] [--compare]
 *
 * Pieces are 256 KiB by default, the size recommended for a swarm of this shape (1 MiB pieces
 * relay four times slower per hop: 1.30 × bound at N = 1000 against 1.13).
 *
 * `--compare` runs the three seed policies (naive, fetcher, server) at N = 8, 200 and `--peers`,
 * and a server-rich N = 8 (64 MiB/s), and prints the table.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { simulateSwarm } from "../lib/sim/swarm/swarm_sim.ts";
import { flashCrowd, MiB } from "../lib/sim/swarm/swarm_scenarios.ts";
import type { SeedMode } from "../lib/swarm/swarm_planner.ts";

/** One bench run's parameters. */
export interface BenchCase {
  /** Fetchers. */
  peers: number;
  /** Seed policy. */
  mode: SeedMode;
  /** Piece size, bytes. */
  pieceBytes: number;
  /** Seed server upload, bytes per second. */
  serverUpBytesPerSec: number;
  /** Run seed. */
  seed: number;
}

/** One bench run's result. */
export interface BenchRow extends BenchCase {
  /** Last finish ÷ bound. */
  ratio: number;
  /** Bound, ms. */
  boundMs: number;
  /** Server bytes ÷ file size. */
  serverShare: number;
  /** Every fetcher finished. */
  finished: boolean;
  /** Peers' BUSY answers (request round trips that moved nothing). */
  busyAnswers: number;
  /** Wall time of the run, ms. */
  wallMs: number;
}

/** Runs one case. */
export function runCase(c: BenchCase): BenchRow {
  const sc = flashCrowd({
    peers: c.peers,
    seed: c.seed,
    pieceBytes: c.pieceBytes,
    seedMode: c.mode,
    serverUpBytesPerSec: c.serverUpBytesPerSec,
  });
  const t0 = performance.now();
  const o = simulateSwarm(sc);
  return {
    ...c,
    ratio: o.ratio,
    boundMs: o.boundMs,
    serverShare: o.serverShare,
    finished: o.finished,
    busyAnswers: o.busyAnswers,
    wallMs: performance.now() - t0,
  };
}

/** A row as one line of text. */
export function formatRow(r: BenchRow): string {
  return [
    `${r.mode.padEnd(7)} N=${String(r.peers).padStart(4)}`,
    `piece=${r.pieceBytes / 1024} KiB`,
    `u_s=${r.serverUpBytesPerSec / MiB} MiB/s`,
    `bound=${(r.boundMs / 1000).toFixed(1)} s`,
    `ratio=${r.ratio.toFixed(3)}`,
    `server=${r.serverShare.toFixed(3)} F`,
    `finished=${r.finished}`,
    `busy=${r.busyAnswers}`,
    `wall=${(r.wallMs / 1000).toFixed(2)} s`,
  ].join("  ");
}

function main(): void {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      peers: { type: "string", default: "1000" },
      "piece-kib": { type: "string", default: "256" },
      mode: { type: "string", default: "server" },
      seed: { type: "string", default: "1" },
      "server-mibps": { type: "string", default: "8" },
      compare: { type: "boolean", default: false },
    },
  });
  const base: BenchCase = {
    peers: Number(values.peers),
    mode: values.mode as SeedMode,
    pieceBytes: Number(values["piece-kib"]) * 1024,
    serverUpBytesPerSec: Number(values["server-mibps"]) * MiB,
    seed: Number(values.seed),
  };
  if (!values.compare) {
    console.log(formatRow(runCase(base)));
    return;
  }
  for (const mode of ["naive", "fetcher", "server"] as const) {
    for (const peers of [8, 200, base.peers]) {
      console.log(formatRow(runCase({ ...base, mode, peers })));
    }
    const rich = { ...base, mode, peers: 8, serverUpBytesPerSec: 64 * MiB };
    console.log(formatRow(runCase(rich)));
  }
}

if (import.meta.main) main();
