/**
 * Bench scenario L: udpget against curl and aria2c across a plain LAN, two network namespaces
 * joined by one veth pair (no rate limit, no delay, no loss), at one or more MTUs. The client is
 * 198.18.0.1/24; the servers are three addresses on the other end (198.18.0.2, .3, .4), so three
 * mirrors are three distinct hosts, each with its own nginx and its own `udpget serve`.
 *
 * Tools, each run `BENCH_LAN_RUNS` times (default 3; the cell is the median): curl over HTTP
 * from one nginx (`sendfile on`), aria2c `-s3 -x1 -k1M` from the three nginx, and
 * `udpget fetch servers.txt 4` from one server and from three, once per I/O mode of
 * `BENCH_LAN_IO` (default `ffi,deno`: `--io MODE` given to both `serve` and `fetch`, the
 * servers restarted per mode; `none` passes no `--io` at all). Each udpget server set gets one
 * untimed warm-up fetch first: the servers hash the file in the background when they start, and
 * the first fetch would wait for that.
 *
 * Measured per run: wall time (from `/usr/bin/time`), the fetching process's CPU seconds and
 * peak RSS (`/usr/bin/time` %U %S %M), and the CPU seconds of every server process the run used
 * (nginx master and worker, `udpget serve`), as deltas of /proc/PID/stat. The output is checked
 * by SHA-256 against the source; a wrong file is a failure, and a failed or timed-out run
 * (`BENCH_LAN_TIMEOUT_S`, default 120) ends its series.
 *
 * `BENCH_LAN_MIB` sets the file size (default 1024), `BENCH_LAN_MTUS` the MTUs (default
 * `1500,9000`; `BENCH_LAN_MTU=N` alone runs just N). Needs root, `ip`, nginx, aria2c, curl and
 * /usr/bin/time. Namespaces are named `udpl-c-PID` and `udpl-s-PID` and deleted, with everything
 * running in them, when the scenario ends, fails or is interrupted.
 *
 * @module
 */

import { BENCH_RUN_FLAGS } from "./runtime_flags.ts";
import { dirname } from "node:path";
import { cpuSeconds, run } from "../wan/wan_path.ts";
import { type LanPath as Lan, openLanPath, SERVER_ADDRS } from "../wan/lan_path.ts";
import { withTimeout } from "../lib/io/timer.ts";
import { gist, sha256sum } from "./tool_output.ts";
import { sleep } from "../lib/io/timer.ts";

const MiB = 1 << 20;
const GiB = 1 << 30;
const UDPGET_PORT = 9000;
const FILE = "l.bin";

/** One row of bench.ts's table. */
export interface LanRow {
  /** Scenario label, on the first row of a group only. */
  scenario: string;
  /** The tool and how it was run. */
  what: string;
  /** Time and rate. */
  value: string;
  /** Ratio to curl, CPU and memory. */
  note?: string;
}

/** Options of {@link runLanBench}. */
export interface LanBenchOptions {
  /** Path of udpget's main.ts. */
  main: string;
  /** Progress lines (stderr). */
  log: (msg: string) => void;
}

/** How one run ended; CPU figures are seconds for the whole run. */
type Outcome =
  | { kind: "ok"; s: number; clientCpuS: number; serverCpuS: number; rssKiB: number }
  | { kind: "failed"; s: number; why: string }
  | { kind: "timeout"; s: number };

function kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch { /* already gone */ }
}

async function childrenOf(pid: number): Promise<number[]> {
  const r = await run("pgrep", ["-P", String(pid)]);
  return r.text.split(/\s+/).filter((p) => /^\d+$/.test(p)).map(Number);
}

/**
 * Empties the output directory. A failed or killed run leaves resume state behind (udpget's
 * OUT.part and OUT.part.state, aria2c's OUT.aria2) that the next run would resume from.
 */
async function freshDir(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir);
}

/** A server process the runs account CPU time to. */
interface ServerProc {
  name: string;
  pids: number[];
}

/** Sum of the CPU seconds of `procs` now; NaN if one of them is gone. */
async function serverCpu(procs: ServerProc[]): Promise<number> {
  const all = await Promise.all(procs.flatMap((p) => p.pids).map(cpuSeconds));
  return all.reduce((sum: number, x) => sum + (x ?? NaN), 0);
}

/** Context of the runs in one LAN. */
interface RunCtx {
  lan: Lan;
  dir: string;
  digest: string;
  timeoutS: number;
}

/**
 * One run of `argv` in the client namespace under /usr/bin/time, with a deadline; the output
 * `out` (in `dir/out`) is checked against the source's digest and removed.
 */
async function runOnce(
  ctx: RunCtx,
  argv: string[],
  out: string,
  servers: ServerProc[],
): Promise<Outcome> {
  const outDir = `${ctx.dir}/out`;
  await freshDir(outDir);
  const timeFile = `${ctx.dir}/time.txt`;
  await Deno.remove(timeFile).catch(() => {});
  const cpu0 = await serverCpu(servers);
  const t0 = performance.now();
  const child = ctx.lan.spawn("client", [
    "/usr/bin/time",
    "-o",
    timeFile,
    "-f",
    "%e %U %S %M",
    ...argv,
  ], { stdout: "piped", stderr: "piped" });
  let timedOut = false;
  const timer = setTimeout(async () => {
    timedOut = true;
    // the tool is /usr/bin/time's child: killing time alone would leave it running
    for (const pid of await childrenOf(child.pid)) kill(pid, "SIGKILL");
    kill(child.pid, "SIGKILL");
  }, ctx.timeoutS * 1000);
  const r = await child.output();
  clearTimeout(timer);
  const wall = (performance.now() - t0) / 1000;
  const cpu1 = await serverCpu(servers);
  if (timedOut) return { kind: "timeout", s: ctx.timeoutS };
  const err = gist(new TextDecoder().decode(r.stderr));
  if (r.code !== 0) {
    return { kind: "failed", s: wall, why: `exit ${r.code}${err ? `: ${err}` : ""}` };
  }
  // time writes "Command exited with non-zero status N" before the format line on failure
  const times = await Deno.readTextFile(timeFile).catch(() => "");
  const line = times.trim().split("\n").at(-1) ?? "";
  const [e, u, sys, rss] = line.split(" ").map(Number);
  if (![e, u, sys, rss].every(Number.isFinite)) {
    return { kind: "failed", s: wall, why: `no figures from /usr/bin/time: ${line}` };
  }
  const got = await sha256sum(out);
  await freshDir(outDir);
  if (got !== ctx.digest) return { kind: "failed", s: e, why: "wrong bytes (sha256 differs)" };
  return { kind: "ok", s: e, clientCpuS: u + sys, serverCpuS: cpu1 - cpu0, rssKiB: rss };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/**
 * The median of `runs` runs, each figure on its own (the peak RSS is the largest); a run that
 * fails or times out ends the series and is what is reported.
 */
async function runMedian(runs: number, once: () => Promise<Outcome>): Promise<Outcome> {
  const ok: Extract<Outcome, { kind: "ok" }>[] = [];
  for (let i = 0; i < Math.max(1, runs); i++) {
    const o = await once();
    if (o.kind !== "ok") return o;
    ok.push(o);
  }
  return {
    kind: "ok",
    s: median(ok.map((o) => o.s)),
    clientCpuS: median(ok.map((o) => o.clientCpuS)),
    serverCpuS: median(ok.map((o) => o.serverCpuS)),
    rssKiB: Math.max(...ok.map((o) => o.rssKiB)),
  };
}

/** One nginx per server address, as in bench.ts's nginx() but on the LAN addresses. */
async function startNginx(lan: Lan, dir: string, root: string): Promise<ServerProc[]> {
  const procs: ServerProc[] = [];
  for (const [i, addr] of SERVER_ADDRS.entries()) {
    const conf = `${dir}/nginx-${i}.conf`;
    await Deno.writeTextFile(
      conf,
      `user root; worker_processes 1; daemon off; pid ${dir}/nginx-${i}.pid;
error_log ${dir}/nginx-${i}.err; events {}
http { access_log off; sendfile on; server { listen ${addr}:80; root ${root}; } }`,
    );
    const master = lan.spawn("server", ["nginx", "-c", conf], { stdout: "null", stderr: "null" });
    let up = false;
    for (let k = 0; k < 100 && !up; k++) {
      const r = await lan.output("client", ["curl", "-s", "-o", "/dev/null", `http://${addr}/`]);
      up = r.code === 0; // any HTTP answer (a 403 for the index) means it listens
      if (!up) await sleep(50); // waiting for an external daemon to bind
    }
    if (!up) throw new Error(`nginx on ${addr} did not start`);
    const workers = await childrenOf(master.pid);
    if (workers.length === 0) throw new Error(`nginx on ${addr} has no worker`);
    procs.push({ name: `nginx ${addr}`, pids: [master.pid, ...workers] });
  }
  return procs;
}

/**
 * Three `udpget serve`, one per server address, with `extra` arguments; resolves once each has
 * printed its listening line. Their log is read to the end (a closed pipe would kill them).
 */
async function startUdpget(
  lan: Lan,
  main: string,
  root: string,
  extra: string[],
): Promise<{ procs: ServerProc[]; children: Deno.ChildProcess[] }> {
  const children = SERVER_ADDRS.map((addr) =>
    lan.spawn("server", [
      Deno.execPath(),
      ...BENCH_RUN_FLAGS,
      main,
      "serve",
      String(UDPGET_PORT),
      "--host",
      addr,
      "--root",
      root,
      "--no-cache",
      ...extra,
    ], { stdout: "piped", stderr: "piped", cwd: dirname(main) })
  );
  const started = await Promise.all(children.map(async (child, i) => {
    let text = "";
    const listening = new Promise<boolean>((resolve) => {
      (async () => {
        for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) {
          if (text.length < 4096) text += c;
          if (/^udpget: serving .* on udp /m.test(text)) resolve(true);
        }
        resolve(false);
      })().catch(() => resolve(false));
    });
    let err = "";
    (async () => {
      for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) {
        if (err.length < 4096) err += c;
      }
    })().catch(() => {});
    const ok = await withTimeout(listening, 30_000);
    return ok
      ? ""
      : `udpget serve on ${SERVER_ADDRS[i]} did not start: ${
        gist(err) || gist(text) || "(no message)"
      }`;
  }));
  const failed = started.find((m) => m !== "");
  if (failed) {
    await lan.stop(children);
    throw new Error(failed);
  }
  return {
    procs: children.map((c, i) => ({ name: `udpget serve ${SERVER_ADDRS[i]}`, pids: [c.pid] })),
    children,
  };
}

function fmtRow(what: string, o: Outcome, curl: Outcome | undefined, size: number): LanRow {
  if (o.kind === "timeout") return { scenario: "", what, value: `timed out after ${o.s} s` };
  if (o.kind === "failed") {
    return { scenario: "", what, value: `failed after ${o.s.toFixed(1)} s`, note: o.why };
  }
  const gib = size / GiB;
  const vs = curl?.kind === "ok" ? `${(o.s / curl.s).toFixed(2)}× curl` : "curl failed";
  return {
    scenario: "",
    what,
    value: `${o.s.toFixed(2)} s, ${(size / MiB / o.s).toFixed(0)} MiB/s`,
    note: `${vs}; CPU s/GiB client ${(o.clientCpuS / gib).toFixed(2)}, servers ${
      (o.serverCpuS / gib).toFixed(2)
    }; client peak RSS ${(o.rssKiB / 1024).toFixed(0)} MiB`,
  };
}

/** The MTUs to run: `BENCH_LAN_MTUS`, else `BENCH_LAN_MTU`, else 1500 and 9000. */
function mtus(): number[] {
  const list = Deno.env.get("BENCH_LAN_MTUS") ?? Deno.env.get("BENCH_LAN_MTU") ?? "1500,9000";
  const out = list.split(",").map((x) => Number(x.trim()));
  if (out.some((m) => !Number.isInteger(m) || m < 1280 || m > 65535)) {
    throw new Error(`bad MTU list "${list}" (integers 1280..65535)`);
  }
  return out;
}

/**
 * Runs scenario L and returns its rows for bench.ts's table: per MTU, curl, aria2c, and udpget
 * from one and from three servers per I/O mode, each with time, rate, ratio to curl's time, CPU
 * seconds per GiB of the client and of the servers, and the client's peak RSS. Needs root;
 * throws if the LAN cannot be set up. Everything it starts is stopped and both namespaces are
 * deleted before it returns or throws, and on SIGINT/SIGTERM.
 */
export async function runLanBench(opts: LanBenchOptions): Promise<LanRow[]> {
  const mib = Number(Deno.env.get("BENCH_LAN_MIB") ?? "1024");
  const runs = Number(Deno.env.get("BENCH_LAN_RUNS") ?? "3");
  const timeoutS = Number(Deno.env.get("BENCH_LAN_TIMEOUT_S") ?? "120");
  const modes = (Deno.env.get("BENCH_LAN_IO") ?? "ffi,deno").split(",").map((m) => m.trim());
  const size = mib * MiB;
  const rows: LanRow[] = [];
  const dir = await Deno.makeTempDir({ prefix: "udpget_lan_bench_" });
  await Deno.chmod(dir, 0o755); // nginx reads the file from here
  const root = `${dir}/srv`;
  await Deno.mkdir(root, { mode: 0o755 });
  let lan: Lan | undefined;
  // Deno ends the process on a signal without running `finally`: clean up, then exit
  const onSignal = async () => {
    await lan?.close();
    // synchronously up to the exit: the main flow, still running, must not write in between
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone */ }
    Deno.exit(130);
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    // random bytes: nothing on the way can compress or deduplicate them
    const f = await Deno.open(`${root}/${FILE}`, { write: true, create: true, mode: 0o644 });
    const chunk = new Uint8Array(MiB);
    for (let i = 0; i < mib; i++) {
      for (let k = 0; k < MiB; k += 65536) crypto.getRandomValues(chunk.subarray(k, k + 65536));
      await f.write(chunk);
    }
    f.close();
    const digest = (await sha256sum(`${root}/${FILE}`))!;
    const out = `${dir}/out/${FILE}`;

    for (const mtu of mtus()) {
      lan = await openLanPath({ mtu });
      const ctx: RunCtx = { lan, dir, digest, timeoutS };
      const label = `L LAN veth MTU ${mtu}, ${mib} MiB, median of ${runs}`;
      const measure = (what: string, o: Outcome): Outcome => {
        const why = o.kind === "failed" ? ` — ${o.why}` : "";
        opts.log(`L MTU ${mtu} ${what}: ${o.kind} ${o.s.toFixed(2)} s${why}`);
        return o;
      };
      try {
        const nginx = await startNginx(lan, dir, root);
        const curl = await measure(
          "curl",
          await runMedian(runs, () =>
            runOnce(
              ctx,
              [
                "curl",
                "-s",
                "-f",
                "-o",
                out,
                `http://${SERVER_ADDRS[0]}/${FILE}`,
              ],
              out,
              nginx.slice(0, 1),
            )),
        );
        rows.push({ ...fmtRow("curl HTTP, 1 nginx", curl, curl, size), scenario: label });
        const aria = await measure(
          "aria2c",
          await runMedian(runs, () =>
            runOnce(
              ctx,
              [
                "aria2c",
                "-q",
                "-d",
                `${dir}/out`,
                "-o",
                FILE,
                "--allow-overwrite=true",
                "--file-allocation=none",
                "-s3",
                "-x1",
                "-k1M",
                ...SERVER_ADDRS.map((a) => `http://${a}/${FILE}`),
              ],
              out,
              nginx,
            )),
        );
        rows.push(fmtRow("aria2c -s3 -x1 -k1M, 3 nginx", aria, curl, size));

        for (const mode of modes) {
          const io = mode === "none" ? [] : ["--io", mode];
          const tag = mode === "none" ? "" : `, --io ${mode}`;
          const sets = [1, 3].map((n) => ({
            n,
            what: `udpget ${n} server${n > 1 ? "s" : ""}${tag}`,
          }));
          let servers: Awaited<ReturnType<typeof startUdpget>>;
          try {
            servers = await startUdpget(lan, opts.main, root, io);
          } catch (e) {
            const why = e instanceof Error ? e.message : String(e);
            opts.log(`L MTU ${mtu}${tag}: ${why}`);
            for (const s of sets) {
              rows.push({ scenario: "", what: s.what, value: "failed", note: why });
            }
            continue;
          }
          try {
            for (const { n, what } of sets) {
              const list = `${dir}/servers-${n}.txt`;
              await Deno.writeTextFile(
                list,
                SERVER_ADDRS.slice(0, n).map((a) => `${a} ${UDPGET_PORT}`).join("\n") + "\n",
              );
              const argv = [
                Deno.execPath(),
                ...BENCH_RUN_FLAGS,
                opts.main,
                "fetch",
                list,
                "4",
                FILE,
                "-o",
                out,
                "-q",
                "--force",
                ...io,
              ];
              const used = servers.procs.slice(0, n);
              // warm-up, untimed: the servers hash the file first (BUSY until then)
              const warm = await runOnce(ctx, argv, out, used);
              opts.log(`L MTU ${mtu} ${what} warm-up: ${warm.kind} ${warm.s.toFixed(2)} s`);
              const o: Outcome = warm.kind === "ok"
                ? await measure(what, await runMedian(runs, () => runOnce(ctx, argv, out, used)))
                : warm.kind === "failed"
                ? { ...warm, why: `warm-up: ${warm.why}` }
                : warm;
              const row = fmtRow(what, o, curl, size);
              if (warm.kind === "timeout") row.note = "warm-up";
              rows.push(row);
            }
          } finally {
            await lan.stop(servers.children);
          }
        }
      } finally {
        await lan.close();
        lan = undefined;
      }
    }
  } finally {
    await lan?.close();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return rows;
}
