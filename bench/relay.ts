/**
 * `deno run -A bench/relay.ts --target PORT [--loss P] [--seed N]`: an impairing UDP relay as
 * its own process (so its CPU is not charged to the client), dropping each datagram with
 * probability P using a seeded PRNG. Prints `relay: 127.0.0.1:PORT` once listening.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { mulberry32, UdpRelay } from "../tests/relay.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { target: { type: "string" }, loss: { type: "string" }, seed: { type: "string" } },
  });
  const loss = Number(values.loss ?? "0");
  const random = mulberry32(Number(values.seed ?? "1"));
  const relay = new UdpRelay(Number(values.target), () => loss > 0 && random() < loss);
  console.log(`relay: 127.0.0.1:${relay.port}`);
  const stop = () => relay.close().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
}
