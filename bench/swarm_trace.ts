/**
 * A timeline of one real-code swarm run (`lib/sim/swarm/real_swarm_sim.ts`), to see where the
 * time past the bound goes: per bin, how busy the fetchers' uplinks and the server's were (of
 * their capacity, headers included), how many copies of pieces were verified, how many pieces
 * were seen for the first time, how many fetchers held a verified piece, how many sent at
 * more than half their capacity and how many have polls they sent; in all, what their other
 * datagrams carried by packet type, and when they had their metadata, their piece hashes and
 * their first piece; per piece, how long it took from its first holder to a second,
 * to half and to all of the crowd. `--max-ms` stops the run early (to look at the ramp alone).
 *
 *   deno run bench/swarm_trace.ts [--peers 200] [--mib 8] [--piece-kib 64] [--block-kib 16]
 *     [--up-kib 8192] [--seed 1] [--bin-ms 50] [--max-ms 120000]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { decode } from "../lib/wire/packet.ts";
import { IP_UDP_HEADER } from "../lib/sim/link.ts";
import { simulateRealSwarm } from "../lib/sim/swarm/real_swarm_sim.ts";
import { crowdOptions, crowdScenario, perFile } from "./real_swarm_sim.ts";

/** The value at quantile `q` of `xs` (sorted here). */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      ...crowdOptions("200", "8"),
      "bin-ms": { type: "string", default: "50" },
      "max-ms": { type: "string", default: "120000" },
    },
  });
  const sc = crowdScenario(values);
  const n = sc.fetchers.length;
  const binMs = Number(values["bin-ms"]);
  const up = sc.peerUpBytesPerSec;
  const pieces = Math.ceil(sc.fileBytes / sc.pieceBytes);
  const holders: number[][] = Array.from({ length: pieces }, () => []);
  /** When each fetcher verified its first piece (ms). */
  const firstHeld = new Array<number>(n).fill(Infinity);
  const samples: { ms: number; bytes: number[] }[] = [];
  /** HAVE_REQUESTs the fetchers sent, per bin. */
  const havePolls: number[] = [];
  /** The fetchers' datagrams other than blocks, by packet type. */
  const control = new Map<string, { count: number; bytes: number }>();
  /** When fetchers got their metadata and their piece hashes (ms). */
  const steps = { meta: [] as number[], hashes: [] as number[] };
  const o = simulateRealSwarm({
    ...sc,
    maxSimMs: Number(values["max-ms"]),
    trace: {
      verified: (i, piece, ms) => {
        holders[piece].push(ms);
        firstHeld[i] = Math.min(firstHeld[i], ms);
      },
      sample: (ms, bytes) => samples.push({ ms, bytes }),
      milestone: (_, step, ms) => steps[step].push(ms),
      datagram: (_, bytes, ms) => {
        const r = decode(bytes);
        const kind = r.ok ? r.packet.type : "undecodable";
        if (kind === "have_request") {
          const bin = Math.floor(ms / binMs);
          havePolls[bin] = (havePolls[bin] ?? 0) + 1;
        }
        const k = control.get(kind) ?? { count: 0, bytes: 0 };
        k.count++;
        k.bytes += bytes.length + IP_UDP_HEADER;
        control.set(kind, k);
      },
      sampleMs: binMs,
    },
  });
  console.log(
    `N = ${n}, ${values.mib} MiB: last ${o.ratio.toFixed(3)} × bound (${o.boundMs.toFixed(0)} ms)` +
      `, server ${o.serverShare.toFixed(2)} F, server first pass over at ` +
      `${o.serverFirstPassEndMs.toFixed(0)} ms`,
  );
  for (const [k, v] of Object.entries(perFile(o, sc.fileBytes))) console.log(`  ${k}: ${v} F`);
  const carried = samples.length ? samples[samples.length - 1].bytes.slice(0, n) : [];
  console.log(
    `  peers' links carried ${(carried.reduce((t, b) => t + b, 0) / sc.fileBytes).toFixed(2)} F`,
  );
  console.log("  the fetchers' other datagrams (IP/UDP headers included):");
  for (const [kind, k] of [...control].sort((a, b) => b[1].bytes - a[1].bytes)) {
    console.log(`    ${kind}: ${k.count}, ${(k.bytes / sc.fileBytes).toFixed(2)} F`);
  }
  const capacity = (up * 1.05 * binMs) / 1000;
  const verifiedIn = (a: number, b: number) =>
    holders.reduce((t, h) => t + h.filter((ms) => ms >= a && ms < b).length, 0);
  console.log(
    "  bin ms   peers busy  server busy  copies verified  pieces first seen  holders  senders" +
      "  have polls",
  );
  for (let i = 1; i < samples.length; i++) {
    const [a, b] = [samples[i - 1], samples[i]];
    let peers = 0;
    for (let f = 0; f < n; f++) peers += b.bytes[f] - a.bytes[f];
    const server = b.bytes[n] - a.bytes[n];
    const firsts = holders.filter((h) => h.length && h[0] >= a.ms && h[0] < b.ms).length;
    const holding = firstHeld.filter((ms) => ms < b.ms).length;
    let senders = 0;
    for (let f = 0; f < n; f++) if (b.bytes[f] - a.bytes[f] > capacity / 2) senders++;
    console.log(
      `  ${a.ms.toFixed(0).padStart(6)}  ${
        (100 * peers / (n * capacity)).toFixed(0).padStart(9)
      } %` +
        `  ${(100 * server / capacity).toFixed(0).padStart(9)} %  ${
          String(verifiedIn(a.ms, b.ms)).padStart(15)
        }  ${String(firsts).padStart(17)}  ${String(holding).padStart(7)}  ${
          String(senders).padStart(7)
        }  ${String(havePolls[Math.round(a.ms / binMs)] ?? 0).padStart(10)}`,
    );
  }
  const spread = holders.map((h, piece) => ({ h, piece })).filter(({ h }) => h.length === n).map(
    ({ h, piece }) => {
      const s = [...h].sort((a, b) => a - b);
      return { piece, first: s[0], half: s[n >> 1] - s[0], all: s[n - 1] - s[0], two: s[1] - s[0] };
    },
  );
  const show = (name: string, xs: number[]) =>
    console.log(
      `  ${name}: median ${quantile(xs, 0.5).toFixed(0)} ms, p90 ${
        quantile(xs, 0.9).toFixed(0)
      } ms, max ${Math.max(...xs).toFixed(0)} ms`,
    );
  show("metadata in", steps.meta);
  show("piece hashes in", steps.hashes);
  show("first piece verified", firstHeld.filter(Number.isFinite));
  console.log("per piece, from its first holder:");
  show("to a second holder", spread.map((s) => s.two));
  show("to half the crowd", spread.map((s) => s.half));
  show("to all", spread.map((s) => s.all));
  console.log("the 8 pieces first seen last (piece: first at, +second, +half, +all, ms):");
  const byFirst = [...spread].sort((a, b) => a.first - b.first);
  for (const s of [...byFirst.slice(0, 4), ...byFirst.slice(-8)]) {
    console.log(
      `  ${s.piece}: ${s.first.toFixed(0)}  +${s.two.toFixed(0)}  +${s.half.toFixed(0)}  +${
        s.all.toFixed(0)
      }`,
    );
  }
}
