/**
 * The link emulator on its own: UDP datagrams from the client namespace to an echo server in
 * the servers' namespace, through linkemu, with the real kernel on both ends. Asserts delivery,
 * seeded loss within a wide statistical band, lower bounds on delay and serialisation (never an
 * upper bound: timing goals belong to benchmarks), and that a blackhole stops traffic and lets
 * it resume. Skipped, with the reason in one line, where WAN paths cannot be opened.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { openWanPath, totalOf, wanAvailable, type WanPath } from "../../wan/wan_path.ts";

const TOOL = fileURLToPath(new URL("./udp_tool.ts", import.meta.url));
const ECHO_PORT = 7007;

const unavailable = await wanAvailable();
if (unavailable) console.log(`linkemu tests skipped: ${unavailable}`);

function tool(path: WanPath, side: "client" | "server", args: string[]): Deno.Command {
  return path.command(side, Deno.execPath(), [
    "run",
    "--quiet",
    "--unstable-net",
    "-A",
    TOOL,
    ...args,
  ], {
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Lines of a child's stdout, as they come. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
    }
  }
}

/** Starts the echo server in the servers' namespace and waits until it is bound. */
async function startEcho(path: WanPath, addr: string): Promise<Deno.ChildProcess> {
  const child = tool(path, "server", ["echo", addr, String(ECHO_PORT)]).spawn();
  const first = await lines(child.stdout).next();
  if (first.value !== "listening") {
    child.kill("SIGKILL");
    throw new Error(
      `echo server did not start: ${new TextDecoder().decode((await child.output()).stderr)}`,
    );
  }
  return child;
}

interface ProbeResult {
  sent: number;
  received: number;
  rttsMs: number[];
  elapsedMs: number;
}

async function probe(
  path: WanPath,
  addr: string,
  count: number,
  size: number,
): Promise<ProbeResult> {
  const out = await tool(path, "client", [
    "probe",
    addr,
    String(ECHO_PORT),
    String(count),
    String(size),
    "3000",
  ])
    .output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(text) as ProbeResult;
}

/** Opens a path, runs `body` with an echo server on every server address, cleans up. */
async function withEcho(
  opts: Parameters<typeof openWanPath>[0],
  body: (path: WanPath) => Promise<void>,
): Promise<void> {
  const path = await openWanPath(opts);
  const echoes: Deno.ChildProcess[] = [];
  try {
    for (const a of path.serverAddrs) echoes.push(await startEcho(path, a));
    await body(path);
  } finally {
    for (const e of echoes) {
      try {
        e.kill("SIGKILL");
      } catch { /* gone */ }
      await e.status;
    }
    await path.close();
  }
}

Deno.test({
  name:
    "linkemu: no loss, every datagram arrives, on each server's own link, no sooner than its RTT",
  ignore: unavailable !== undefined,
  fn: () =>
    withEcho(
      {
        servers: 2,
        rateMbit: 100,
        rttMs: 20,
        loss: 0,
        queueBytes: 4 << 20,
        links: [{ server: 2, rttMs: 60 }],
      },
      async (path) => {
        for (const [i, addr] of path.serverAddrs.entries()) {
          const r = await probe(path, addr, 500, 200);
          assert.equal(r.received, 500, JSON.stringify(await path.stats()));
          const rtt = i === 0 ? 20 : 60;
          const min = Math.min(...r.rttsMs);
          assert.ok(min >= rtt, `${addr}: min RTT ${min} ms < ${rtt} ms`);
        }
        const stats = await path.stats();
        for (const addr of path.serverAddrs) {
          for (const dir of ["up", "down"]) {
            const l = stats.links.find((x) => x.link === addr && x.direction === dir);
            assert.ok(l, `no ${dir} link for ${addr}`);
            assert.equal(l.forwarded, 500);
            assert.equal(l.droppedLoss + l.droppedQueue + l.droppedBlackhole, 0);
          }
        }
      },
    ),
});

Deno.test({
  name: "linkemu: 20 % seeded loss each way loses about 36 % of round trips",
  ignore: unavailable !== undefined,
  fn: () =>
    withEcho(
      { servers: 1, rateMbit: 100, rttMs: 10, loss: 0.2, seed: 7, queueBytes: 4 << 20 },
      async (path) => {
        const r = await probe(path, path.serverAddrs[0], 1000, 200);
        // a round trip survives with 0.8 * 0.8 = 0.64: mean 360 lost, sd 15; the band is > 7 sd
        const lost = r.sent - r.received;
        assert.ok(lost >= 250 && lost <= 470, `lost ${lost} of 1000`);
        const stats = await path.stats();
        const up = totalOf(stats, "droppedLoss", "up");
        assert.ok(up >= 120 && up <= 280, `dropped ${up} of 1000 going up`);
        assert.equal(totalOf(stats, "droppedQueue"), 0);
      },
    ),
});

Deno.test({
  name: "linkemu: a 2 Mbit/s link takes at least the serialisation time of what it carried",
  ignore: unavailable !== undefined,
  fn: () =>
    withEcho({ servers: 1, rateMbit: 2, rttMs: 10, loss: 0, queueBytes: 4 << 20 }, async (path) => {
      const r = await probe(path, path.serverAddrs[0], 100, 1200);
      assert.equal(r.received, 100);
      // 100 IP packets of 1228 bytes at 2 Mbit/s: 491 ms of serialisation, a lower bound
      const minMs = 100 * 1228 * 8 / 2e6 * 1000;
      assert.ok(r.elapsedMs >= minMs, `${r.elapsedMs} ms < ${minMs} ms`);
    }),
});

Deno.test({
  name: "linkemu: blackhole stops traffic both ways, and it resumes afterwards",
  ignore: unavailable !== undefined,
  fn: () =>
    withEcho({ servers: 1, rateMbit: 100, rttMs: 10, loss: 0 }, async (path) => {
      const stream = tool(path, "client", ["stream", path.serverAddrs[0], String(ECHO_PORT), "10"])
        .spawn();
      try {
        const echoes = lines(stream.stdout);
        const nextEcho = async () => {
          const l = await echoes.next();
          assert.ok(!l.done, "stream ended");
          return Number(l.value.split(" ")[1]);
        };
        while (await nextEcho() < 5); // traffic flows
        await path.control("blackhole 1500");
        // while it lasts, the drop counter grows and nothing is forwarded
        const during = await path.stats();
        assert.ok(during.blackholeMsLeft > 0);
        let later = during;
        for (let i = 0; i < 100 && totalOf(later, "droppedBlackhole") < 10; i++) {
          await new Promise((r) => setTimeout(r, 20)); // polling the counters
          later = await path.stats();
        }
        assert.ok(later.blackholeMsLeft > 0, "blackhole ended before 10 packets were dropped");
        assert.ok(totalOf(later, "droppedBlackhole") >= 10);
        assert.equal(totalOf(later, "forwarded"), totalOf(during, "forwarded"));
        // after it: wait for the end, then for an echo (generous bound: 10 s)
        for (let i = 0; i < 500 && (await path.stats()).blackholeMsLeft > 0; i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
        const atEnd = totalOf(await path.stats(), "forwarded", "down");
        const resumed = await Promise.race([
          (async () => {
            while (totalOf(await path.stats(), "forwarded", "down") <= atEnd) {
              await new Promise((r) => setTimeout(r, 20));
            }
            return await nextEcho() > 0;
          })(),
          new Promise<false>((r) => setTimeout(() => r(false), 10_000)),
        ]);
        assert.ok(resumed, "no echo within 10 s after the blackhole");
      } finally {
        try {
          stream.kill("SIGKILL");
        } catch { /* gone */ }
        await stream.status;
      }
    }),
});
