/**
 * Swarm bench with the product's own code in the simulator (`lib/sim/swarm/real_swarm_sim.ts`):
 * a flash crowd of real fetchers (coordinator, session, swarm node, peer share), one `--rate`
 * server with its first-copy ledger and the real tracker core. Prints the last finish as a ratio
 * to the bound, the server's upload as a multiple of the file, where the peers' upload went,
 * and the wall time. Where `bench/swarm_sim.ts` measures the policy, this measures the product.
 *
 *   deno run bench/real_swarm_sim.ts [--peers 32] [--mib 16] [--piece-kib 64] [--block-kib 16]
 *     [--up-kib 8192] [--seed 1]
 *
 * `--up-kib`: the server's `--rate` and every fetcher's `--share-rate`, KiB/s (default 8 MiB/s).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  MiB,
  realFlashCrowd,
  type RealSwarmOutcome,
  simulateRealSwarm,
} from "../lib/sim/swarm/real_swarm_sim.ts";

/** The outcome's totals as multiples of the file: what came from where, and what was wasted. */
export function perFile(o: RealSwarmOutcome, fileBytes: number): Record<string, string> {
  const sum = (pick: (f: RealSwarmOutcome["fetchers"][number]) => number) =>
    (o.fetchers.reduce((t, f) => t + pick(f), 0) / fileBytes).toFixed(2);
  return {
    "from server": sum((f) => f.fromServer),
    "from peers": sum((f) => f.fromPeers),
    "peers uploaded": sum((f) => f.uploaded),
    "peer bytes wasted": sum((f) => f.peerWaste),
    "re-requested": sum((f) => f.rerequested),
  };
}

/** The command-line options of a flash crowd (see the module comment), with their defaults. */
export function crowdOptions(peers: string, mib: string) {
  return {
    peers: { type: "string", default: peers },
    mib: { type: "string", default: mib },
    "piece-kib": { type: "string", default: "64" },
    "block-kib": { type: "string", default: "16" },
    "up-kib": { type: "string", default: "8192" },
    seed: { type: "string", default: "1" },
  } as const;
}

/** The flash crowd those options describe (`--up-kib`: the server's and every fetcher's cap). */
export function crowdScenario(values: Record<keyof ReturnType<typeof crowdOptions>, string>) {
  const up = Number(values["up-kib"]) << 10;
  return realFlashCrowd({
    peers: Number(values.peers),
    seed: Number(values.seed),
    fileBytes: Number(values.mib) * MiB,
    pieceBytes: Number(values["piece-kib"]) << 10,
    blockSize: Number(values["block-kib"]) << 10,
    serverUpBytesPerSec: up,
    peerUpBytesPerSec: up,
  });
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: crowdOptions("32", "16") });
  const fileBytes = Number(values.mib) * MiB;
  const t0 = performance.now();
  const o = simulateRealSwarm(crowdScenario(values));
  const wall = (performance.now() - t0) / 1000;
  console.log(
    `real swarm, N = ${values.peers}, ${values.mib} MiB: ` +
      (o.finished ? `last ${o.ratio.toFixed(3)} × bound` : "not finished") +
      `, server ${o.serverShare.toFixed(2)} F, all correct: ${o.allCorrect}, ${wall.toFixed(1)} s`,
  );
  for (const [k, v] of Object.entries(perFile(o, fileBytes))) console.log(`  ${k}: ${v} F`);
  console.log(
    `  server: link carried ${(o.serverLinkBytes / fileBytes).toFixed(3)} F, ` +
      `first pass over at ${(o.serverFirstPassEndMs / o.boundMs).toFixed(3)} × bound, ` +
      `${o.serverGivenOut} GIVEN_OUT, ${o.serverBusy} BUSY, ${o.serverHashReplies} hash replies ` +
      `(${o.serverHashesBusy} swarm hash requests told BUSY)`,
  );
}
