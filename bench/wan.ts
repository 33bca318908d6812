/**
 * Bench scenario W: udpget against aria2c and curl across a real-kernel WAN path (linkemu
 * between two network namespaces, see wan/wan_path.ts), every tool over the same links in one
 * run.
 *
 * Paths: 3 mirrors, each behind its own 100 Mbit/s link with 50 ms RTT, at 0, 1, 3 and 5 %
 * random loss each way (the loss is changed on the running emulator, so every tool and every
 * loss level sees the same links and servers); then the fast row, 3 mirrors × 333 Mbit/s × 10 ms
 * with 1 GiB; then one 1 Gbit/s, 10 ms link shared by the three mirrors (loss 0).
 * `BENCH_WAN_PATHS=lossy,fast,shared` picks the paths. Tools: `udpget fetch servers.txt 4` (default block size, and
 * `--block-size 1444`, which does not fragment), aria2c `-s3 -x1 -k1M` from three nginx, curl
 * from one nginx; the TCP tools with the servers' congestion control set to BBR, then CUBIC.
 *
 * Every run's output is checked by SHA-256 (a wrong file is a failure), and every run has a
 * timeout of 10x the ideal time of the mirrors it uses (30 s at least, 300 s at most), so a
 * stalled tool is recorded as timed out instead of hanging the benchmark.
 *
 * Each cell is the median of `BENCH_WAN_RUNS` runs (default 3); a failed or timed-out run ends
 * its series. `BENCH_WAN_MIB` sets the file size (default 128), `BENCH_WAN_TIMEOUT_X` the
 * timeout factor.
 *
 * @module
 */

import { BENCH_RUN_FLAGS } from "./runtime_flags.ts";
import { cpuSeconds, openWanPath, totalOf, type WanPath } from "../wan/wan_path.ts";
import { sha256sum } from "./tool_output.ts";

const MiB = 1 << 20;
const UDPGET_PORT = 9000;

/** How one run ended. */
type Outcome =
  | { kind: "ok"; s: number }
  | { kind: "failed"; s: number; why: string }
  | { kind: "timeout"; s: number };

/** One row of the table: a path, its ideal time, and each tool's outcome. */
interface WanRow {
  path: string;
  idealS: number;
  outcomes: Map<string, Outcome>;
}

/** One tool as run in the bench. */
interface Tool {
  name: string;
  /** Servers' TCP congestion control to set first (TCP tools only). */
  cc?: "bbr" | "cubic";
  /** How many mirrors it pulls from (for its timeout). */
  mirrors: number;
  /** The command, run in the client namespace, writing `out`. */
  argv(ctx: { list: string; out: string; addrs: string[]; file: string }): string[];
}

/** Options of {@link runWanBench}. */
export interface WanBenchOptions {
  /** Path of udpget's main.ts. */
  main: string;
  /** Progress lines (stderr). */
  log: (msg: string) => void;
}

function tools(main: string): Tool[] {
  const udpget = (extra: string[]): Tool["argv"] => ({ list, out, file }) => [
    Deno.execPath(),
    ...BENCH_RUN_FLAGS,
    main,
    "fetch",
    list,
    "4",
    file,
    "-o",
    out,
    "-q",
    "--force",
    ...extra,
  ];
  const aria: Tool["argv"] = ({ out, addrs, file }) => [
    "aria2c",
    "-q",
    "-d",
    out.slice(0, out.lastIndexOf("/")),
    "-o",
    out.slice(out.lastIndexOf("/") + 1),
    "--allow-overwrite=true",
    "--file-allocation=none",
    "-s3",
    "-x1",
    "-k1M",
    ...addrs.map((a) => `http://${a}/${file}`),
  ];
  const curl: Tool["argv"] = ({ out, addrs, file }) => [
    "curl",
    "-s",
    "-f",
    "-o",
    out,
    `http://${addrs[0]}/${file}`,
  ];
  return [
    { name: "udpget", mirrors: 3, argv: udpget([]) },
    { name: "udpget --block-size 1444", mirrors: 3, argv: udpget(["--block-size", "1444"]) },
    { name: "aria2c BBR", cc: "bbr", mirrors: 3, argv: aria },
    { name: "aria2c CUBIC", cc: "cubic", mirrors: 3, argv: aria },
    { name: "curl 1 mirror BBR", cc: "bbr", mirrors: 1, argv: curl },
    { name: "curl 1 mirror CUBIC", cc: "cubic", mirrors: 1, argv: curl },
  ];
}

async function sh(cmd: Deno.Command): Promise<string> {
  const out = await cmd.output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout) + dec.decode(out.stderr);
  if (out.code !== 0) throw new Error(`command failed (${out.code}): ${text}`);
  return text;
}

/**
 * Empties the output directory. A failed or killed run leaves resume state behind (udpget's
 * OUT.part and OUT.part.state, aria2c's OUT.aria2), and the next tool would resume from it
 * instead of fetching the whole file.
 */
async function freshOutDir(out: string): Promise<void> {
  const dir = out.slice(0, out.lastIndexOf("/"));
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir);
}

/** Runs `argv` in the client namespace with a deadline; checks the output's digest. */
/**
 * The median of `runs` runs of a tool, as the loopback scenarios take (one run is at the mercy
 * of the machine); a run that fails or times out ends the series and is what is reported (a
 * tool that collapses is not run three times into its timeout).
 */
async function runMedian(runs: number, once: () => Promise<Outcome>): Promise<Outcome> {
  const times: number[] = [];
  for (let i = 0; i < Math.max(1, runs); i++) {
    const o = await once();
    if (o.kind !== "ok") return o;
    times.push(o.s);
  }
  times.sort((a, b) => a - b);
  return { kind: "ok", s: times[Math.floor(times.length / 2)] };
}

async function runOnce(
  path: WanPath,
  argv: string[],
  out: string,
  digest: string,
  timeoutS: number,
  size: number,
): Promise<Outcome> {
  await freshOutDir(out);
  const before = totalOf(await path.stats(), "forwardedBytes", "down");
  const t0 = performance.now();
  const child = path.command("client", argv[0], argv.slice(1), {
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutS * 1000);
  const r = await child.output();
  clearTimeout(timer);
  const s = (performance.now() - t0) / 1000;
  if (timedOut) return { kind: "timeout", s: timeoutS };
  const err = new TextDecoder().decode(r.stderr).trim().split("\n").at(-1) ?? "";
  if (r.code !== 0) return { kind: "failed", s, why: `exit ${r.code}${err ? `: ${err}` : ""}` };
  const got = await sha256sum(out);
  await freshOutDir(out);
  if (got !== digest) return { kind: "failed", s, why: "wrong bytes (sha256 differs)" };
  // a sanity check of the bench itself: the whole file must have crossed the emulated path
  const crossed = totalOf(await path.stats(), "forwardedBytes", "down") - before;
  if (crossed < size) {
    return { kind: "failed", s, why: `only ${(crossed / MiB).toFixed(1)} MiB crossed the path` };
  }
  return { kind: "ok", s };
}

/** The mirrors of one path: udpget serve and nginx on every server address. */
async function startMirrors(
  path: WanPath,
  dir: string,
  main: string,
): Promise<() => Promise<void>> {
  const children: Deno.ChildProcess[] = [];
  const stop = async () => {
    for (const c of children) {
      try {
        c.kill("SIGTERM"); // nginx's master stops its worker on TERM; SIGKILL would orphan it
      } catch { /* gone */ }
    }
    await Promise.allSettled(children.map((c) => c.status));
  };
  try {
    for (const [i, addr] of path.serverAddrs.entries()) {
      const child = path.command("server", Deno.execPath(), [
        ...BENCH_RUN_FLAGS,
        main,
        "serve",
        String(UDPGET_PORT),
        "--root",
        `${dir}/srv`,
        "--host",
        addr,
        "--no-cache",
      ], { stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
      children.push(child);
      // read its log to the end (a closed pipe would kill it) and wait for the listening line
      const listening = new Promise<boolean>((resolve) => {
        let text = "";
        (async () => {
          for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) {
            text += c;
            if (text.includes("on udp ")) resolve(true);
          }
          resolve(false);
        })().catch(() => resolve(false));
      });
      child.stderr.pipeTo(new WritableStream()).catch(() => {});
      if (!await listening) throw new Error(`udpget serve on ${addr} did not start`);

      const conf = `${dir}/nginx-${i}.conf`;
      await Deno.writeTextFile(
        conf,
        `user root; worker_processes 1; daemon off; pid ${dir}/nginx-${i}.pid;
error_log ${dir}/nginx-${i}.err; events {}
http { access_log off; sendfile on; server { listen ${addr}:80; root ${dir}/srv; } }`,
      );
      children.push(
        path.command("server", "nginx", ["-c", conf], { stdout: "null", stderr: "null" }).spawn(),
      );
      let up = false;
      for (let k = 0; k < 100 && !up; k++) {
        const r = await path.command("server", "curl", [
          "-s",
          "-o",
          "/dev/null",
          "-f",
          `http://${addr}/`,
        ], { stdout: "null", stderr: "null" }).output();
        up = r.code === 0 || r.code === 22; // 22: an HTTP error (no index): it answers
        if (!up) await new Promise((r) => setTimeout(r, 50)); // waiting for a daemon to bind
      }
      if (!up) throw new Error(`nginx on ${addr} did not start`);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return stop;
}

/**
 * Makes the servers hash the file (udpget servers answer BUSY until they have), without a
 * whole transfer: a fetch runs until data crosses the path, then stops.
 */
async function warmUp(path: WanPath, argv: string[], out: string): Promise<void> {
  await freshOutDir(out);
  const child = path.command("client", argv[0], argv.slice(1), {
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const start = totalOf(await path.stats(), "forwardedBytes", "down");
  let exited = false;
  child.status.then(() => exited = true);
  for (let i = 0; i < 1200 && !exited; i++) {
    if (totalOf(await path.stats(), "forwardedBytes", "down") - start > 4 * MiB) break;
    await new Promise((r) => setTimeout(r, 50)); // polling the emulator's counters
  }
  try {
    child.kill("SIGKILL");
  } catch { /* done already */ }
  await child.status;
  await freshOutDir(out);
}

async function setCc(path: WanPath, cc: string): Promise<void> {
  await sh(path.command("server", "sysctl", ["-q", "-w", `net.ipv4.tcp_congestion_control=${cc}`]));
}

function fmtOutcome(o: Outcome | undefined, idealS: number): string {
  if (!o) return "–";
  if (o.kind === "timeout") return `timed out after ${o.s.toFixed(0)} s`;
  if (o.kind === "failed") return `failed after ${o.s.toFixed(1)} s (${o.why.split(":")[0]})`;
  return `${o.s.toFixed(1)} s (${(100 * idealS / o.s).toFixed(0)} %)`;
}

function report(rows: WanRow[], names: string[], mib: number, notes: string[]): string {
  const header = ["path", "ideal", ...names];
  const cells = rows.map((r) => [
    r.path,
    `${r.idealS.toFixed(2)} s`,
    ...names.map((n) => fmtOutcome(r.outcomes.get(n), r.idealS)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i])).join("  ");
  const title = `W: ${mib} MiB (unless the path says otherwise) across linkemu (real kernel ` +
    `TCP/UDP, TUN, 1500-byte MTU); ` +
    `seconds and share of ideal (ideal/time); ideal = size / Σ rate×(1−loss)`;
  return [
    "",
    title,
    "",
    line(header),
    line(widths.map((w) => "-".repeat(w))),
    ...cells.map(line),
    "",
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => i < 2 ? "---" : "---:").join("|")}|`,
    ...cells.map((c) => `| ${c.join(" | ")} |`),
    "",
    ...notes,
    "",
  ].join("\n");
}

/** Writes `mib` MiB of random bytes (nothing on the path can compress them); their SHA-256. */
async function randomFile(path: string, mib: number): Promise<string> {
  const f = await Deno.open(path, { write: true, create: true, mode: 0o644 });
  const chunk = new Uint8Array(MiB);
  for (let i = 0; i < mib; i++) {
    for (let k = 0; k < MiB; k += 65536) crypto.getRandomValues(chunk.subarray(k, k + 65536));
    await f.write(chunk);
  }
  f.close();
  return (await sha256sum(path))!;
}

/**
 * Runs scenario W and returns its report (a text table and the same as Markdown). Needs root,
 * TUN, cc, nginx, aria2c and curl; throws if a path cannot be opened.
 */
export async function runWanBench(opts: WanBenchOptions): Promise<string> {
  const mib = Number(Deno.env.get("BENCH_WAN_MIB") ?? "128");
  const factor = Number(Deno.env.get("BENCH_WAN_TIMEOUT_X") ?? "10");
  const runs = Number(Deno.env.get("BENCH_WAN_RUNS") ?? "3");
  const only = (Deno.env.get("BENCH_WAN_PATHS") ?? "lossy,fast,shared").split(",");
  // BENCH_WAN_TOOLS: a comma-separated subset of the tool names (all of them by default)
  const pick = Deno.env.get("BENCH_WAN_TOOLS")?.split(",").map((t) => t.trim());
  const every = tools(opts.main);
  const all = every.filter((t) => !pick || pick.includes(t.name));
  const dir = await Deno.makeTempDir({ prefix: "udpget_wan_bench_" });
  await Deno.chmod(dir, 0o755);
  await Deno.mkdir(`${dir}/srv`, { mode: 0o755 });
  await Deno.mkdir(`${dir}/out`);
  const rows: WanRow[] = [];
  const notes: string[] = [];
  const allowedPath = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";
  const allowedBefore = (await Deno.readTextFile(allowedPath)).trim();
  try {
    const paths = [
      {
        name: "lossy",
        rateMbit: 100,
        rttMs: 50,
        losses: [0, 0.01, 0.03, 0.05],
        shared: false,
        mib,
      },
      // the fast row: at 128 MiB the process start and hashing alone are a tenth of the ideal
      { name: "fast", rateMbit: 333, rttMs: 10, losses: [0], shared: false, mib: 1024 },
      { name: "shared", rateMbit: 1000, rttMs: 10, losses: [0], shared: true, mib },
    ].filter((p) => only.includes(p.name));
    const digests = new Map<number, string>();
    for (const m of new Set(paths.map((p) => p.mib))) {
      digests.set(m, await randomFile(`${dir}/srv/w${m}.bin`, m));
    }
    // the namespaces' own default may be set only to an allowed algorithm
    await sh(
      new Deno.Command("sysctl", {
        args: ["-q", "-w", "net.ipv4.tcp_allowed_congestion_control=reno bbr cubic"],
      }),
    );

    for (const p of paths) {
      const file = `w${p.mib}.bin`;
      const size = p.mib * MiB;
      const digest = digests.get(p.mib)!;
      const path = await openWanPath({
        servers: 3,
        rateMbit: p.rateMbit,
        rttMs: p.rttMs,
        loss: 0,
        seed: 2026,
        shared: p.shared,
      });
      let stopMirrors = async () => {};
      try {
        stopMirrors = await startMirrors(path, dir, opts.main);
        const list = `${dir}/servers.txt`;
        await Deno.writeTextFile(
          list,
          path.serverAddrs.map((a) => `${a} ${UDPGET_PORT}`).join("\n") + "\n",
        );
        const ctx = { list, out: `${dir}/out/${file}`, addrs: path.serverAddrs, file };
        await warmUp(path, every[1].argv(ctx), ctx.out); // (udpget: the mirrors hash the file)
        for (const loss of p.losses) {
          await path.control(`loss ${loss * 100}`);
          const label = p.shared
            ? `1 link of ${p.rateMbit / 1000} Gbit/s shared by 3 mirrors, ${p.rttMs} ms, ${
              loss * 100
            } % loss`
            : `3 × ${p.rateMbit} Mbit/s, ${p.rttMs} ms, ${loss * 100} % loss, ${p.mib} MiB`;
          const capacity = (p.shared ? 1 : 3) * p.rateMbit * 1e6 * (1 - loss);
          const row: WanRow = { path: label, idealS: size * 8 / capacity, outcomes: new Map() };
          rows.push(row);
          for (const t of all) {
            if (t.cc) await setCc(path, t.cc);
            const own = size * 8 / ((p.shared ? 1 : t.mirrors) * p.rateMbit * 1e6 * (1 - loss));
            const timeoutS = Math.min(300, Math.max(30, Math.ceil(factor * own)));
            const o = await runMedian(
              runs,
              () => runOnce(path, t.argv(ctx), ctx.out, digest, timeoutS, size),
            );
            row.outcomes.set(t.name, o);
            const why = o.kind === "failed" ? ` — ${o.why}` : "";
            opts.log(`W ${label}: ${t.name}: ${fmtOutcome(o, row.idealS)}${why}`);
            if (o.kind === "failed") notes.push(`- ${label}, ${t.name}: ${o.why}`);
          }
        }
      } finally {
        await stopMirrors();
        const cpu = await cpuSeconds(path.emulatorPid);
        const last = await path.close();
        if (last) {
          const note = `- linkemu on the ${p.rateMbit} Mbit/s path: ${
            (totalOf(last, "forwardedBytes") / MiB).toFixed(0)
          } MiB forwarded, ${totalOf(last, "droppedQueue")} packets tail-dropped, ${
            totalOf(last, "droppedLoss")
          } lost at random; ${cpu?.toFixed(1) ?? "?"} CPU seconds`;
          notes.push(note);
          opts.log(`W ${note.slice(2)}`);
        }
      }
    }
  } finally {
    await new Deno.Command("sysctl", {
      args: ["-q", "-w", `net.ipv4.tcp_allowed_congestion_control=${allowedBefore}`],
    }).output();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return report(rows, all.map((t) => t.name), mib, notes);
}
