/**
 * `deno task bench`: udpget against the tools a user would otherwise pick, in one run, on
 * loopback. Installs missing Debian tools (aria2, nginx-light, tftpd-hpa, iperf3, curl,
 * atftp), makes random files in a temp dir, starts every server, and prints one table: each
 * scenario's median of RUNS runs for udpget and for each anchor, and the ratio.
 *
 * `BENCH_RUNS=N` changes the number of runs, `BENCH_ONLY=A,C` runs some scenarios only.
 * Scenario M (bench/micro.ts) times the JavaScript work per datagram each way, without sockets.
 * Scenario W (WAN paths through the link emulator, bench/wan.ts; root, TUN and cc needed) takes
 * about a quarter of an hour and is not in the default list: `BENCH_ONLY=W` runs it alone.
 * Scenario L (a plain LAN: two network namespaces joined by a veth pair at MTU 1500 and 9000,
 * curl and aria2c from nginx against udpget per I/O mode, with CPU per GiB and peak RSS;
 * bench/lan.ts, root needed; `BENCH_LAN_*` settings there) is not in the default list either:
 * `BENCH_ONLY=L` runs it alone. Scenario TW (atftp at every RFC 7440 windowsize × blksize from
 * `udpget serve --tftp`, 64 MiB; a minute or two) is opt-in too: `BENCH_ONLY=TW`.
 * Scenario TL (tracker load: 100 000 peers in 1 000 swarms announced twice, to `udpget tracker`
 * and to opentracker in the same run; bench/tracker_load.ts) is opt-in: `BENCH_ONLY=TL`.
 * Scenario F (one file to N fetchers, every uploader capped: aria2c BitTorrent with opentracker,
 * udpget client/server and the udpget swarm; bench/swarm.ts, root needed; `BENCH_SWARM_*`
 * settings there; a few minutes) is opt-in: `BENCH_ONLY=F`.
 * Scenario RS (200 fetchers of 64 MiB in 256 KiB pieces, scenario F's caps, with the product's own
 * code in the simulator, `lib/sim/swarm/real_swarm_sim.ts`; 8–11 minutes of one core, 13 GB)
 * is opt-in: `BENCH_ONLY=RS`.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { BENCH_RUN_FLAGS } from "./runtime_flags.ts";
import { runLanBench } from "./lan.ts";
import { runTrackerLoad } from "./tracker_load.ts";
import { runSwarmBench } from "./swarm.ts";
import { runWanBench } from "./wan.ts";
import { measureReceive, measureSend } from "./micro.ts";
import { realFlashCrowd, simulateRealSwarm } from "../lib/sim/swarm/real_swarm_sim.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const RELAY = fileURLToPath(new URL("./relay.ts", import.meta.url));
const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? "3");
const ONLY = (Deno.env.get("BENCH_ONLY") ?? "M,A,B,C,D,E,T").split(",");
const MiB = 1 << 20;
const GiB = 1 << 30;

interface Row {
  scenario: string;
  what: string;
  value: string;
  note?: string;
}
const rows: Row[] = [];

function log(msg: string): void {
  console.error(`bench: ${msg}`);
}

async function sh(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  const out = await new Deno.Command(cmd, { args, cwd: opts.cwd, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${out.code}): ${text}`);
  return text;
}

async function have(cmd: string): Promise<boolean> {
  const r = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`], stdout: "null" })
    .output();
  return r.code === 0;
}

async function ensureTools(): Promise<void> {
  const need = [
    ["aria2c", "aria2"],
    ["nginx", "nginx-light"],
    ["in.tftpd", "tftpd-hpa"],
    [
      "iperf3",
      "iperf3",
    ],
    ["curl", "curl"],
    ["atftp", "atftp"],
    ["/usr/bin/time", "time"],
  ];
  const missing: string[] = [];
  for (const [cmd, pkg] of need) if (!(await have(cmd))) missing.push(pkg);
  if (missing.length === 0) return;
  log(`installing ${missing.join(" ")}`);
  await sh("apt-get", ["update", "-qq"]);
  await sh("env", [
    "DEBIAN_FRONTEND=noninteractive",
    "apt-get",
    "install",
    "-y",
    "-qq",
    ...missing,
  ]);
}

/** Wall-clock seconds and peak RSS (KiB) of one command, via /usr/bin/time. */
async function timed(
  cmd: string,
  args: string[],
  cwd: string,
): Promise<{ s: number; rssKiB: number }> {
  const t0 = performance.now();
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "RSS=%M", cmd, ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const s = (performance.now() - t0) / 1000;
  const err = new TextDecoder().decode(out.stderr);
  if (out.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${err.slice(-500)}`);
  const rss = Number(/RSS=(\d+)/.exec(err)?.[1] ?? "0");
  return { s, rssKiB: rss };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function medianOf(
  label: string,
  run: () => Promise<{ s: number; rssKiB: number }>,
): Promise<{ s: number; rssKiB: number }> {
  const s: number[] = [];
  const r: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const x = await run();
    s.push(x.s);
    r.push(x.rssKiB);
  }
  log(`${label}: ${s.map((x) => x.toFixed(2)).join(" ")} s`);
  return { s: median(s), rssKiB: Math.max(...r) };
}

// ---- processes -----------------------------------------------------------------------

const children: Deno.ChildProcess[] = [];
/** Cleanups for what is not a direct child (daemons started through a shell). */
const stops: (() => Promise<unknown>)[] = [];

async function spawnUntil(cmd: string, args: string[], re: RegExp): Promise<RegExpMatchArray> {
  const child = new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" })
    .spawn();
  children.push(child);
  let text = "";
  const dec = new TextDecoder();
  return await new Promise((resolve, reject) => {
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const c of s) {
        text += dec.decode(c);
        const m = text.match(re);
        if (m) resolve(m);
      }
      reject(new Error(`${cmd} ended without ${re}: ${text}`));
    };
    pump(child.stdout);
    pump(child.stderr).catch(() => {});
  });
}

async function udpgetServer(root: string, extra: string[] = []): Promise<number> {
  const m = await spawnUntil(
    Deno.execPath(),
    [
      ...BENCH_RUN_FLAGS,
      MAIN,
      "serve",
      "0",
      "--root",
      root,
      "--host",
      "127.0.0.1",
      "--no-cache",
      ...extra,
    ],
    /on udp 127\.0\.0\.1:(\d+)/,
  );
  return Number(m[1]);
}

async function relay(target: number, loss: number, seed: number): Promise<number> {
  const m = await spawnUntil(
    Deno.execPath(),
    [
      ...BENCH_RUN_FLAGS,
      RELAY,
      "--target",
      String(target),
      "--loss",
      String(loss),
      "--seed",
      String(seed),
    ],
    /relay: 127\.0\.0\.1:(\d+)/,
  );
  return Number(m[1]);
}

function fetchArgs(list: string, file: string, out: string, extra: string[] = []): string[] {
  return [
    ...BENCH_RUN_FLAGS,
    MAIN,
    "fetch",
    list,
    "3",
    file,
    "-o",
    out,
    "-q",
    "--force",
    ...extra,
  ];
}

async function udpgetFetch(
  dir: string,
  ports: number[],
  file: string,
  extra: string[] = [],
): Promise<{ s: number; rssKiB: number }> {
  const list = `${dir}/servers-${ports.join("-")}.txt`;
  await Deno.writeTextFile(list, ports.map((p) => `127.0.0.1 ${p}`).join("\n"));
  const r = await timed(Deno.execPath(), fetchArgs(list, file, `${dir}/out/${file}`, extra), dir);
  await Deno.remove(`${dir}/out/${file}`);
  return r;
}

async function nginx(dir: string, name: string, root: string, ports: number[], rates?: string[]) {
  const servers = ports.map((p, i) =>
    `server { listen 127.0.0.1:${p}; root ${root}; ${rates ? `limit_rate ${rates[i]};` : ""} }`
  ).join("\n");
  const conf = `${dir}/${name}.conf`;
  await Deno.writeTextFile(
    conf,
    `user root; worker_processes 1; daemon off; pid ${dir}/${name}.pid; error_log ${dir}/${name}.err;
events {} http { access_log off; sendfile on; ${servers} }`,
  );
  const child = new Deno.Command("nginx", { args: ["-c", conf], stdout: "null", stderr: "null" })
    .spawn();
  children.push(child);
  for (let i = 0; i < 100; i++) {
    const ok = await new Deno.Command("curl", {
      args: ["-s", "-o", "/dev/null", `http://127.0.0.1:${ports[0]}/`],
    }).output();
    if (ok.code === 0) return;
    await new Promise((r) => setTimeout(r, 50)); // waiting for an external daemon to bind
  }
  throw new Error("nginx did not start");
}

/** aria2c from every port at once, as in the shared figures: `-s3 -x1 -k1M`. */
async function aria2(dir: string, ports: number[], file: string) {
  const r = await timed("aria2c", [
    "-q",
    "-d",
    `${dir}/out`,
    "-o",
    "a.bin",
    "--allow-overwrite=true",
    "--file-allocation=none",
    "-s3",
    "-x1",
    "-k1M",
    ...ports.map((p) => `http://127.0.0.1:${p}/${file}`),
  ], dir);
  await Deno.remove(`${dir}/out/a.bin`);
  return r;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

// ---- scenarios -----------------------------------------------------------------------

async function makeFile(path: string, size: number): Promise<void> {
  // 64 MiB of random data repeated: fast to make, and no compression or dedup anywhere.
  const chunk = new Uint8Array(Math.min(size, 64 * MiB));
  for (let i = 0; i < chunk.length; i += 65536) {
    crypto.getRandomValues(chunk.subarray(i, i + 65536));
  }
  const f = await Deno.open(path, { write: true, create: true, truncate: true });
  for (let left = size; left > 0; left -= chunk.length) {
    await f.write(chunk.subarray(0, Math.min(left, chunk.length)));
  }
  f.close();
}

function fmtS(s: number): string {
  return `${s.toFixed(2)} s`;
}

/** M: JavaScript work per datagram each way, without the kernel (bench/micro.ts); best of 3. */
async function microRows(): Promise<void> {
  const recv: number[] = [];
  const send: number[] = [];
  for (let i = 0; i < 3; i++) {
    recv.push(measureReceive().nsPerDatagram);
    send.push((await measureSend()).nsPerDatagram);
  }
  rows.push({
    scenario: "M JS work per 1444-byte datagram",
    what: "receive: dispatch → engine → write",
    value: `${Math.min(...recv).toFixed(0)} ns`,
    note: `runs ${recv.map((x) => x.toFixed(0)).join(" / ")} ns; goal < 1000 ns`,
  });
  rows.push({
    scenario: "",
    what: "send: gate → serve core → sendmmsg layout",
    value: `${Math.min(...send).toFixed(0)} ns`,
    note: `runs ${send.map((x) => x.toFixed(0)).join(" / ")} ns; goal < 1000 ns`,
  });
}

function rate(bytes: number, s: number): string {
  return `${(bytes / MiB / s).toFixed(0)} MiB/s`;
}

async function main(): Promise<void> {
  await ensureTools();
  // W brings its own paths, servers and file: without A-E, skip the loopback set-up entirely
  const wan = ONLY.includes("W") ? await runWanBench({ main: MAIN, log }) : "";
  // L too: its own namespaces, servers and file; its rows go into the table
  if (ONLY.includes("L")) rows.push(...await runLanBench({ main: MAIN, log }));
  if (ONLY.includes("F")) rows.push(...await runSwarmBench({ main: MAIN, log }));
  if (ONLY.includes("TL")) rows.push(...await trackerLoadRows());
  if (ONLY.includes("RS")) rows.push(realSwarmRow());
  if (ONLY.includes("M")) await microRows();
  if (!ONLY.some((s) => ["A", "B", "C", "D", "E", "T", "TW"].includes(s))) {
    if (rows.length > 0) printTable();
    console.log(wan);
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "udpget_bench_" });
  await Deno.mkdir(`${dir}/srv`);
  await Deno.mkdir(`${dir}/out`);
  await Deno.chmod(dir, 0o755);
  const srv = `${dir}/srv`;
  try {
    log(`files in ${srv}`);
    await makeFile(`${srv}/g1.bin`, GiB);
    await makeFile(`${srv}/m256.bin`, 256 * MiB);
    const ports = [await udpgetServer(srv), await udpgetServer(srv), await udpgetServer(srv)];
    // warm-up: servers hash each file once, page cache holds it
    for (const f of ["g1.bin", "m256.bin"]) await udpgetFetch(dir, ports, f);

    if (ONLY.includes("A") || ONLY.includes("E")) {
      const httpPorts = [freePort(), freePort(), freePort()];
      await nginx(dir, "plain", srv, httpPorts);
      const u = await medianOf("A udpget", () => udpgetFetch(dir, ports, "g1.bin"));
      const curl = await medianOf(
        "A curl",
        () =>
          timed(
            "curl",
            ["-s", "-o", `${dir}/out/c.bin`, `http://127.0.0.1:${httpPorts[0]}/g1.bin`],
            dir,
          ),
      );
      const aria = await medianOf("A aria2c", () => aria2(dir, httpPorts, "g1.bin"));
      const cp = await medianOf(
        "A cp",
        () => timed("cp", [`${srv}/g1.bin`, `${dir}/out/cp.bin`], dir),
      );
      if (ONLY.includes("A")) {
        rows.push({ scenario: "A 1 GiB, 3 servers, 3 conns", what: "udpget", value: fmtS(u.s) });
        rows.push({
          scenario: "",
          what: "curl HTTP (1 source)",
          value: fmtS(curl.s),
          note: `udpget/curl ${(u.s / curl.s).toFixed(2)}× time; goal ≤ 1`,
        });
        rows.push({
          scenario: "",
          what: "aria2c -s3 -x1 -k1M",
          value: fmtS(aria.s),
          note: `udpget/aria2c ${(u.s / aria.s).toFixed(2)}× time; goal < 1`,
        });
        rows.push({
          scenario: "",
          what: "cp",
          value: fmtS(cp.s),
          note: `udpget/cp ${(u.s / cp.s).toFixed(2)}×`,
        });
      }
      if (ONLY.includes("E")) {
        await makeFile(`${srv}/g4.bin`, 4 * GiB);
        await udpgetFetch(dir, ports, "g4.bin"); // warm-up (hashing)
        const u4 = await medianOf("E udpget 4 GiB", () => udpgetFetch(dir, ports, "g4.bin"));
        const c4 = await medianOf(
          "E curl 4 GiB",
          () =>
            timed("curl", [
              "-s",
              "-o",
              `${dir}/out/c.bin`,
              `http://127.0.0.1:${httpPorts[0]}/g4.bin`,
            ], dir),
        );
        const a4 = await medianOf("E aria2c 4 GiB", () => aria2(dir, httpPorts, "g4.bin"));
        await Deno.remove(`${srv}/g4.bin`);
        const mib = (k: number) => `${(k / 1024).toFixed(0)} MiB`;
        rows.push({
          scenario: "E peak RSS of the fetch",
          what: "udpget 1 GiB / 4 GiB",
          value: `${mib(u.rssKiB)} / ${mib(u4.rssKiB)}`,
          note: "goal ≤ 100 MiB, flat",
        });
        rows.push({
          scenario: "",
          what: "curl 1 GiB / 4 GiB",
          value: `${mib(curl.rssKiB)} / ${mib(c4.rssKiB)}`,
        });
        rows.push({
          scenario: "",
          what: "aria2c 1 GiB / 4 GiB",
          value: `${mib(aria.rssKiB)} / ${mib(a4.rssKiB)}`,
        });
      }
    }

    if (ONLY.includes("B")) {
      const size = 256 * MiB;
      // 1 GiB (at 256 MiB the process start and hashing alone are a tenth of the time)
      const u = await medianOf(
        "B udpget 1444 B",
        () => udpgetFetch(dir, ports, "g1.bin", ["--block-size", "1444"]),
      );
      const httpPort = freePort();
      await nginx(dir, "b", srv, [httpPort]);
      const curl = await medianOf(
        "B curl",
        () =>
          timed(
            "curl",
            ["-s", "-o", `${dir}/out/c.bin`, `http://127.0.0.1:${httpPort}/g1.bin`],
            dir,
          ),
      );
      const tftpPort = freePort();
      await spawnUntil("sh", [
        "-c",
        `exec in.tftpd -L -s ${srv} -a 127.0.0.1:${tftpPort} -u root -v 2>&1 & sleep 0.3; echo started`,
      ], /started/);
      // the backgrounded tftpd is no child of ours and holds the shell's stdout: stop it by name,
      // or the benchmark would never exit
      const pattern = `in.tftpd -L -s ${srv} -a 127.0.0.1:${tftpPort}`;
      stops.push(() => new Deno.Command("pkill", { args: ["-f", pattern] }).output());
      const tftp = await medianOf(
        "B TFTP blksize 1428",
        () =>
          timed("curl", [
            "-s",
            "--tftp-blksize",
            "1428",
            "-o",
            `${dir}/out/t.bin`,
            `tftp://127.0.0.1:${tftpPort}/m256.bin`,
          ], dir),
      );
      const ip = freePort();
      await spawnUntil("sh", [
        "-c",
        `exec iperf3 -s -1 -p ${ip} 2>&1 | head -c 0 & sleep 0.3; echo started`,
      ], /started/);
      const iperf = JSON.parse(
        await sh("iperf3", [
          "-c",
          "127.0.0.1",
          "-p",
          String(ip),
          "-u",
          "-b",
          "0",
          "-l",
          "1400",
          "-t",
          "2",
          "--json",
        ]),
      );
      const gbit = (iperf.end?.sum?.bits_per_second ?? 0) / 1e9;
      const ur = GiB / MiB / u.s;
      rows.push({
        scenario: "B 1 GiB, ≤ 1472-byte datagrams",
        what: "udpget --block-size 1444",
        value: `${fmtS(u.s)}, ${rate(GiB, u.s)}`,
        note: `udpget/curl ${(u.s / curl.s).toFixed(2)}× time, goal ≤ 1.2; ` +
          `${(ur / (size / MiB / tftp.s)).toFixed(1)}× TFTP`,
      });
      rows.push({
        scenario: "",
        what: "curl HTTP (1 source)",
        value: `${fmtS(curl.s)}, ${rate(GiB, curl.s)}`,
      });
      rows.push({
        scenario: "",
        what: "curl TFTP blksize 1428, 256 MiB",
        value: rate(size, tftp.s),
      });
      rows.push({
        scenario: "",
        what: "iperf3 UDP 1400 B ceiling",
        value: `${(gbit * 1e9 / 8 / MiB).toFixed(0)} MiB/s`,
      });
    }

    if (ONLY.includes("C")) {
      const size = 256 * MiB;
      const caps = ["60Mi", "20Mi", "4Mi"];
      const ideal = size / ((60 + 20 + 4) * MiB);
      const capped = [
        await udpgetServer(srv, ["--rate", caps[0]]),
        await udpgetServer(srv, ["--rate", caps[1]]),
        await udpgetServer(srv, ["--rate", caps[2]]),
      ];
      await udpgetFetch(dir, capped, "m256.bin"); // warm-up (hashing)
      const httpPorts = [freePort(), freePort(), freePort()];
      await nginx(dir, "capped", srv, httpPorts, ["60m", "20m", "4m"]);
      for (const order of ["fast-first", "slow-first"]) {
        const ps = order === "fast-first" ? capped : [...capped].reverse();
        const hs = order === "fast-first" ? httpPorts : [...httpPorts].reverse();
        const u = await medianOf(`C udpget ${order}`, () => udpgetFetch(dir, ps, "m256.bin"));
        const a = await medianOf(`C aria2c ${order}`, () => aria2(dir, hs, "m256.bin"));
        rows.push({
          scenario: `C 256 MiB, caps 60/20/4 MiB/s, ${order}`,
          what: "udpget",
          value: fmtS(u.s),
          note: `${(100 * ideal / u.s).toFixed(0)} % of ideal ${ideal.toFixed(2)} s; goal ≥ 95 %`,
        });
        rows.push({
          scenario: "",
          what: "aria2c",
          value: fmtS(a.s),
          note: `${(100 * ideal / a.s).toFixed(0)} % of ideal`,
        });
      }
    }

    if (ONLY.includes("T")) await scenarioT(dir, srv);
    if (ONLY.includes("TW")) await scenarioTW(dir, srv);

    if (ONLY.includes("D")) {
      let base = 0;
      for (const [i, loss] of [0, 0.01, 0.05].entries()) {
        const relays = [
          await relay(ports[0], loss, 11 + i),
          await relay(ports[1], loss, 21 + i),
          await relay(ports[2], loss, 31 + i),
        ];
        const u = await medianOf(
          `D udpget ${loss * 100}% loss`,
          () => udpgetFetch(dir, relays, "g1.bin"),
        );
        const goodput = GiB / MiB / u.s;
        if (loss === 0) base = goodput;
        const goal = loss === 0 ? "baseline" : loss === 0.01 ? "goal ≥ 90 %" : "goal ≥ 75 %";
        rows.push({
          scenario: i === 0 ? "D 1 GiB through a lossy relay" : "",
          what: `udpget, ${loss * 100} % loss`,
          value: `${goodput.toFixed(0)} MiB/s`,
          note: `${(100 * goodput / base).toFixed(0)} % of 0 %; ${goal}`,
        });
      }
    }
  } finally {
    for (const stop of stops) await stop().catch(() => {});
    for (const c of children) {
      try {
        c.kill("SIGTERM");
      } catch { /* gone */ }
    }
    await Promise.allSettled(children.map((c) => c.status));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  printTable();
  console.log(wan);
}

function freeUdpPort(): number {
  const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const p = (s.addr as Deno.NetAddr).port;
  s.close();
  return p;
}

/**
 * T: TFTP, the same 256 MiB file to curl at blksize 1428 (lock-step: one block per round trip)
 * from tftpd-hpa and from `udpget serve --tftp`, runs alternating so both see the same machine;
 * then atftp with RFC 7440 windows from udpget (the best of several window sizes), and the same
 * atftp from tftpd-hpa (which has no windowsize, so it stays lock-step).
 */
async function scenarioT(dir: string, srv: string): Promise<void> {
  const size = 256 * MiB;
  const hpaPort = freeUdpPort();
  const hpa = new Deno.Command("in.tftpd", {
    args: ["-L", "-s", srv, "-a", `127.0.0.1:${hpaPort}`, "-u", "root"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn(); // -L: stays in the foreground, our child
  children.push(hpa);
  const udpPort = freeUdpPort();
  await udpgetServer(srv, ["--tftp", String(udpPort)]); // its TFTP line comes before "on udp"
  await Deno.writeTextFile(`${srv}/probe.txt`, "probe");
  for (let i = 0;; i++) {
    const ok = await new Deno.Command("curl", {
      args: ["-s", "-o", "/dev/null", `tftp://127.0.0.1:${hpaPort}/probe.txt`],
    }).output();
    if (ok.code === 0) break;
    if (i === 100) throw new Error("in.tftpd did not start");
    await new Promise((r) => setTimeout(r, 50)); // waiting for an external daemon to bind
  }
  const curl = (port: number) =>
    timed("curl", [
      "-s",
      "--tftp-blksize",
      "1428",
      "-o",
      `${dir}/out/t.bin`,
      `tftp://127.0.0.1:${port}/m256.bin`,
    ], dir);
  await curl(hpaPort); // warm-up: page cache, JIT
  await curl(udpPort);
  const hpaS: number[] = [];
  const udpS: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    hpaS.push((await curl(hpaPort)).s);
    udpS.push((await curl(udpPort)).s);
  }
  log(`T tftpd-hpa curl 1428: ${hpaS.map((x) => x.toFixed(2)).join(" ")} s`);
  log(`T udpget curl 1428: ${udpS.map((x) => x.toFixed(2)).join(" ")} s`);
  const atftp = (port: number, window: number) =>
    timed("atftp", [
      "--option",
      "blksize 1428",
      "--option",
      `windowsize ${window}`,
      "-g",
      "-r",
      "m256.bin",
      "-l",
      `${dir}/out/a.bin`,
      "127.0.0.1",
      String(port),
    ], dir);
  let best = { window: 0, s: Infinity };
  for (const window of [8, 16, 32, 64]) {
    const r = await medianOf(`T udpget atftp windowsize ${window}`, () => atftp(udpPort, window));
    if (r.s < best.s) best = { window, s: r.s };
  }
  const hpaWin = await medianOf("T tftpd-hpa atftp windowsize 16", () => atftp(hpaPort, 16));
  const hpaRate = size / MiB / median(hpaS);
  const udpRate = size / MiB / median(udpS);
  const wins = udpS.filter((x, i) => x < hpaS[i]).length;
  rows.push({
    scenario: "T 256 MiB over TFTP",
    what: "curl blksize 1428 from tftpd-hpa",
    value: rate(size, median(hpaS)),
  });
  rows.push({
    scenario: "",
    what: "curl blksize 1428 from udpget --tftp",
    value: rate(size, median(udpS)),
    note: `udpget/tftpd-hpa ${(udpRate / hpaRate).toFixed(2)}× (faster in ${wins}/${RUNS} ` +
      `alternating runs); goal ≥ 1`,
  });
  rows.push({
    scenario: "",
    what: `atftp windowsize ${best.window} from udpget --tftp`,
    value: rate(size, best.s),
    note: `best of windowsize 8/16/32/64; ${(size / MiB / best.s / hpaRate).toFixed(1)}× ` +
      `tftpd-hpa lock-step`,
  });
  rows.push({
    scenario: "",
    what: "atftp windowsize 16 from tftpd-hpa",
    value: rate(size, hpaWin.s),
    note: "tftpd-hpa 5.2 has no windowsize: lock-step",
  });
}

/**
 * TW: atftp fetching 64 MiB from `udpget serve --tftp` at windowsize 1, 8, 16, 32 and 64 for
 * blksize 512, 1428, 8192 and 32768 (the server grants at most 256 KiB a window), median of RUNS
 * each. One row per blksize; the note says whether any window was slower than lock-step.
 */
async function scenarioTW(dir: string, srv: string): Promise<void> {
  const size = 64 * MiB;
  const f = await Deno.open(`${srv}/w64.bin`, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(MiB);
  for (let i = 0; i < 64; i++) {
    for (let k = 0; k < MiB; k += 65536) crypto.getRandomValues(chunk.subarray(k, k + 65536));
    await f.write(chunk);
  }
  f.close();
  const port = freeUdpPort();
  await udpgetServer(srv, ["--tftp", String(port)]);
  const windows = [1, 8, 16, 32, 64];
  for (const [i, blksize] of [512, 1428, 8192, 32768].entries()) {
    const times: number[] = [];
    for (const window of windows) {
      const args = ["--option", `blksize ${blksize}`, "--option", `windowsize ${window}`];
      const r = await medianOf(
        `TW atftp blksize ${blksize} windowsize ${window}`,
        () =>
          timed("atftp", [
            ...args,
            "-g",
            "-r",
            "w64.bin",
            "-l",
            `${dir}/out/w.bin`,
            "127.0.0.1",
            String(port),
          ], dir),
      );
      times.push(r.s);
    }
    const slower = windows.filter((_w, k) => k > 0 && times[k] > times[0]);
    rows.push({
      scenario: i === 0 ? `TW 64 MiB, atftp from udpget --tftp, median of ${RUNS}` : "",
      what: `blksize ${blksize}: windowsize ${windows.join("/")}`,
      value: times.map((t) => `${t.toFixed(2)} s`).join(" / "),
      note: slower.length === 0
        ? `no window slower than lock-step (${rate(size, Math.min(...times))} at best)`
        : `windowsize ${slower.join(", ")} slower than lock-step`,
    });
  }
}

function printTable(): void {
  const cpu = Deno.readTextFileSync("/proc/cpuinfo").match(/model name\s*:\s*(.*)/)?.[1] ?? "?";
  // L counts its own runs (BENCH_LAN_RUNS, in its rows)
  const runs = ONLY.some((s) => ["A", "B", "C", "D", "E", "T", "TW"].includes(s))
    ? `median of ${RUNS} runs; `
    : "";
  console.log(
    `\nudpget benchmark, ${runs}${navigator.hardwareConcurrency} cores, ${cpu}; ${
      new Date().toISOString().slice(0, 10)
    }\n`,
  );
  console.log("| scenario | tool | figure | comparison |");
  console.log("|---|---|---:|---|");
  for (const r of rows) console.log(`| ${r.scenario} | ${r.what} | ${r.value} | ${r.note ?? ""} |`);
}

await main();

/**
 * Scenario RS: the issue's 200-peer flash crowd with the product's code in the loop, at the
 * product's own piece size for the file (256 KiB) and scenario F's caps (8 MiB/s everywhere).
 */
function realSwarmRow(): Row {
  log("RS: 200 fetchers, 64 MiB, real code in the simulator");
  const t0 = performance.now();
  const fileBytes = 64 * MiB;
  const o = simulateRealSwarm(realFlashCrowd({
    peers: 200,
    seed: 1,
    fileBytes,
    pieceBytes: 256 << 10,
    blockSize: 64 << 10,
  }));
  const fromPeers = o.fetchers.reduce((t, f) => t + f.fromPeers, 0) / fileBytes;
  return {
    scenario: "RS 200 fetchers, 64 MiB, 256 KiB pieces, 8 MiB/s (simulated, bound 8 s)",
    what: "udpget swarm (its code in the simulator)",
    value: o.finished ? `last ${o.ratio.toFixed(3)} × bound` : "not finished",
    note: `server ${o.serverShare.toFixed(2)} F, peers gave ${fromPeers.toFixed(1)} F, ` +
      `all correct: ${o.allCorrect}; ${
        ((performance.now() - t0) / 1000).toFixed(0)
      } s of wall time`,
  };
}

/** Scenario TL: the same announce flood to `udpget tracker` and to opentracker. */
async function trackerLoadRows(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const tracker of ["udpget", "opentracker"] as const) {
    log(`TL: ${tracker}`);
    const r = await runTrackerLoad({ tracker });
    rows.push({
      scenario: rows.length === 0
        ? `TL ${r.peers} peers in ${r.swarms} swarms, announced twice`
        : "",
      what: tracker === "udpget" ? "udpget tracker" : "opentracker (whitelist of the 1 000)",
      value: `${r.firstPassPerSecond} / ${r.secondPassPerSecond} announces/s`,
      note: `peak RSS ${(r.vmHwmKiB / 1024).toFixed(1)} MiB; ${r.resent} resent`,
    });
  }
  return rows;
}
