import assert from "node:assert/strict";
import { formatRow, runCase } from "../../../bench/swarm_sim.ts";
import { MiB } from "../../../lib/sim/swarm/swarm_scenarios.ts";

Deno.test("swarm bench: a small case runs and prints its ratio, server share and wall time", () => {
  const row = runCase({
    peers: 8,
    mode: "server",
    pieceBytes: MiB,
    serverUpBytesPerSec: 8 * MiB,
    seed: 1,
  });
  assert.ok(row.finished);
  const line = formatRow(row);
  for (const field of ["ratio=", "server=", "wall="]) assert.ok(line.includes(field), line);
});
