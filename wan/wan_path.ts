/**
 * A real-kernel wide-area path for tests and benchmarks: two network namespaces (client and
 * servers) joined by `linkemu` (wan/linkemu.c), a user-space link emulator between two TUN
 * devices, because this kernel has no netem. Both ends run the kernel's own TCP and UDP, so
 * fragmentation, congestion control and socket buffers behave as they would across the world.
 *
 * Addresses: the client is 198.18.0.1, the servers 198.18.1.1..N (198.18.0.0/15 is reserved for
 * benchmarking, RFC 2544). Every path has its own namespaces, so parallel paths reuse the same
 * addresses without meeting.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { withTimeout } from "../lib/io/timer.ts";

const SOURCE = fileURLToPath(new URL("./linkemu.c", import.meta.url));
/** Compiled emulators, one per source hash (gitignored). */
const BUILD_DIR = fileURLToPath(new URL("./.build/", import.meta.url));

/** Options of {@link openWanPath}. */
export interface WanPathOptions {
  /** Number of server addresses (198.18.1.1 .. 198.18.1.N), each with its own link. */
  servers: number;
  /** Link rate per server and direction, Mbit/s (0: unlimited). */
  rateMbit: number;
  /** Round-trip propagation delay, ms (half each way). */
  rttMs: number;
  /** Random loss on entry, a fraction (0.03 = 3 %), each direction. */
  loss: number;
  /** Queue limit per link and direction in bytes; default one bandwidth-delay product. */
  queueBytes?: number;
  /** PRNG seed of the loss decisions (default 1). */
  seed?: number;
  /** One link shared by every server instead of one per server (a common bottleneck). */
  shared?: boolean;
  /** Per-server exceptions to the settings above (ignored with `shared`). */
  links?: LinkOverride[];
}

/** Settings of one server's link (both directions) that differ from the path's. */
export interface LinkOverride {
  /** The server, 1-based: 198.18.1.`server`. */
  server: number;
  /** Link rate, Mbit/s. */
  rateMbit?: number;
  /** Round-trip propagation delay, ms. */
  rttMs?: number;
  /** Random loss, a fraction. */
  loss?: number;
  /** Queue limit, bytes. */
  queueBytes?: number;
}

/** Counters of one link in one direction. */
export interface LinkStats {
  /** The server address of the link, "all" for a shared link, "other" for any other address. */
  link: string;
  /** "up" is client to server. */
  direction: "up" | "down";
  /** Packets delivered. */
  forwarded: number;
  /** Bytes (IP packets, headers included) delivered. */
  forwardedBytes: number;
  /** Packets dropped by random loss. */
  droppedLoss: number;
  /** Packets dropped because the queue was full (tail drop). */
  droppedQueue: number;
  /** Packets dropped by a blackhole. */
  droppedBlackhole: number;
  /** Packets waiting in the queue or on the wire right now. */
  queued: number;
}

/** What the emulator reports on `stats`. */
export interface WanStats {
  /** Every link that has carried (or dropped) a packet. */
  links: LinkStats[];
  /** Milliseconds left of the current blackhole (0: none). */
  blackholeMsLeft: number;
}

/** Where a command runs. */
export type WanSide = "client" | "server";

/** An open path; `close()` it in a `finally`. */
export interface WanPath {
  /** Name of the client's network namespace. */
  readonly clientNs: string;
  /** Name of the servers' network namespace. */
  readonly serverNs: string;
  /** The client's address, 198.18.0.1. */
  readonly clientAddr: string;
  /** The servers' addresses, 198.18.1.1 .. 198.18.1.N. */
  readonly serverAddrs: string[];
  /** Process id of the emulator (to read its CPU time from /proc, say). */
  readonly emulatorPid: number;
  /**
   * Sends one command line to the emulator (`blackhole <ms>`, `loss <pct>`) and resolves with
   * its answer line; rejects if the emulator answers "error ...".
   */
  control(cmd: string): Promise<string>;
  /** The emulator's counters now. */
  stats(): Promise<WanStats>;
  /** A command that runs `cmd args` inside the client's or the servers' namespace. */
  command(side: WanSide, cmd: string, args: string[], options?: Deno.CommandOptions): Deno.Command;
  /**
   * Kills whatever still runs in the two namespaces, stops the emulator, deletes the namespaces
   * and resolves with the emulator's last counters (undefined if it had died). Idempotent.
   */
  close(): Promise<WanStats | undefined>;
}

const CLIENT_ADDR = "198.18.0.1";

/** Runs `cmd args` to completion: its exit code and its stdout and stderr, trimmed. */
export async function run(cmd: string, args: string[]): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", stdin: "null" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, text: (dec.decode(out.stdout) + dec.decode(out.stderr)).trim() };
}

/** Runs `cmd args`; its output, or an error naming the command when it fails. */
export async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.text}`);
  return r.text;
}

let availability: Promise<string | undefined> | undefined;

/**
 * Undefined when WAN paths can be opened here, otherwise a one-line reason (not root, no
 * /dev/net/tun, no `ip`, no `cc`, namespaces refused). Checked once per process.
 */
export function wanAvailable(): Promise<string | undefined> {
  availability ??= (async () => {
    const tryRun = (cmd: string, args: string[]) =>
      run(cmd, args).catch(() => ({ code: -1, text: `${cmd} not found` }));
    const id = await tryRun("id", ["-u"]);
    if (id.code !== 0 || id.text !== "0") return "WAN path needs root (network namespaces, TUN)";
    // through `test`: Deno grants /dev (and /proc) only to --allow-all, which `deno task test`
    // does not give
    if ((await tryRun("test", ["-c", "/dev/net/tun"])).code !== 0) {
      return "WAN path needs /dev/net/tun";
    }
    if ((await tryRun("ip", ["-V"])).code !== 0) return "WAN path needs `ip` (iproute2)";
    if ((await tryRun("cc", ["--version"])).code !== 0) return "WAN path needs a C compiler (cc)";
    const probe = `ugwan-probe-${Deno.pid}-${randomHex(4)}`;
    const add = await tryRun("ip", ["netns", "add", probe]);
    if (add.code !== 0) return `WAN path cannot create network namespaces: ${add.text}`;
    await tryRun("ip", ["netns", "del", probe]);
    return undefined;
  })();
  return availability;
}

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Compiles linkemu.c unless a binary for this exact source exists, and returns its path. The
 * binary is named by the source's hash and renamed into place, so concurrent callers (parallel
 * tests) never run a half-written file.
 */
export async function buildLinkemu(): Promise<string> {
  const src = await Deno.readFile(SOURCE);
  const hash = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", src)))
    .slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
  const bin = `${BUILD_DIR}linkemu-${hash}`;
  try {
    await Deno.stat(bin);
    return bin;
  } catch { /* not built yet */ }
  await Deno.mkdir(BUILD_DIR, { recursive: true });
  const tmp = `${bin}.tmp-${Deno.pid}-${randomHex(4)}`;
  await must("cc", ["-O2", "-Wall", "-o", tmp, SOURCE]);
  await Deno.rename(tmp, bin);
  return bin;
}

/** Reads the emulator's stdout line by line and matches answers to the commands sent. */
class EmulatorLink {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #waiting: { resolve: (lines: string[]) => void; reject: (e: Error) => void }[] = [];
  #stats: string[] | undefined;
  #ready: Promise<string>;
  #stderr = "";
  readonly done: Promise<void>;

  constructor(child: Deno.ChildProcess) {
    this.child = child;
    this.#writer = child.stdin.getWriter();
    let ready!: (line: string) => void;
    let notReady!: (e: Error) => void;
    this.#ready = new Promise((res, rej) => {
      ready = res;
      notReady = rej;
    });
    const errPump = (async () => {
      const dec = new TextDecoder();
      for await (const c of child.stderr) this.#stderr += dec.decode(c, { stream: true });
    })();
    this.done = (async () => {
      let buf = "";
      const dec = new TextDecoder();
      for await (const chunk of child.stdout) {
        buf += dec.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.#line(line, ready);
        }
      }
      await errPump;
      const err = new Error(`linkemu exited: ${this.#stderr.trim() || "(no message)"}`);
      notReady(err);
      for (const w of this.#waiting.splice(0)) w.reject(err);
    })();
    this.#ready.catch(() => {});
  }

  #line(line: string, ready: (line: string) => void): void {
    this.lines.push(line);
    if (this.lines.length > 1000) this.lines.splice(0, 500); // a log, not a history
    if (line.startsWith("ready ")) return ready(line);
    if (line === "stats begin") {
      this.#stats = [line];
      return;
    }
    if (this.#stats) {
      this.#stats.push(line);
      if (line.startsWith("stats end")) {
        const block = this.#stats;
        this.#stats = undefined;
        this.#waiting.shift()?.resolve(block);
      }
      return;
    }
    if (line.startsWith("ok ") || line.startsWith("error ")) this.#waiting.shift()?.resolve([line]);
    // "event ..." lines are informational only
  }

  ready(): Promise<string> {
    return this.#ready;
  }

  /** Sends `cmd` and resolves with its answer (one line, or a stats block). */
  async send(cmd: string): Promise<string[]> {
    if (cmd.includes("\n")) throw new Error("one command per call");
    const answer = new Promise<string[]>((resolve, reject) =>
      this.#waiting.push({ resolve, reject })
    );
    await this.#writer.write(new TextEncoder().encode(cmd + "\n"));
    return await answer;
  }

  async closeStdin(): Promise<void> {
    await this.#writer.close().catch(() => {});
  }
}

function parseStats(block: string[]): WanStats {
  const links: LinkStats[] = [];
  let blackholeMsLeft = 0;
  for (const line of block) {
    const f = Object.fromEntries(
      line.split(" ").filter((w) => w.includes("=")).map((w) => w.split("=")),
    ) as Record<string, string>;
    const n = (k: string) => Number(f[k] ?? "0");
    if (line.startsWith("link ")) {
      const [, link, direction] = line.split(" ");
      links.push({
        link,
        direction: direction === "up" ? "up" : "down",
        forwarded: n("fwd_pkts"),
        forwardedBytes: n("fwd_bytes"),
        droppedLoss: n("drop_loss"),
        droppedQueue: n("drop_queue"),
        droppedBlackhole: n("drop_blackhole"),
        queued: n("queued"),
      });
    } else if (line.startsWith("stats end")) {
      blackholeMsLeft = n("blackhole_left_ms");
    }
  }
  return { links, blackholeMsLeft };
}

/** Sums a counter over the links of one direction (or both). */
export function totalOf(
  stats: WanStats,
  key: "forwarded" | "forwardedBytes" | "droppedLoss" | "droppedQueue" | "droppedBlackhole",
  direction?: "up" | "down",
): number {
  return stats.links.filter((l) => !direction || l.direction === direction)
    .reduce((sum, l) => sum + l[key], 0);
}

/**
 * Opens a path: two fresh namespaces, the emulator between them, the client at 198.18.0.1 and
 * `servers` addresses on the other side, each behind its own link of `rateMbit`, `rttMs` and
 * `loss` (or one link for all with `shared`). Throws (after cleaning up) if any step fails.
 */
export async function openWanPath(opts: WanPathOptions): Promise<WanPath> {
  if (!(opts.servers >= 1 && opts.servers <= 254)) throw new Error("servers must be 1..254");
  const id = `${Deno.pid.toString(36)}${randomHex(3)}`;
  const clientNs = `ugwan-${id}-c`;
  const serverNs = `ugwan-${id}-s`;
  // interface names: at most 15 characters, unique in the root namespace until moved
  const tunC = `ugc${randomHex(5)}`;
  const tunS = `ugs${randomHex(5)}`;
  const serverAddrs = Array.from({ length: opts.servers }, (_, i) => `198.18.1.${i + 1}`);
  const made: string[] = [];
  let emu: EmulatorLink | undefined;
  let closed: Promise<WanStats | undefined> | undefined;

  const close = (): Promise<WanStats | undefined> => {
    closed ??= (async () => {
      // whatever the caller left running in our namespaces would keep them alive: kill by pid
      for (const ns of made) {
        const pids = await run("ip", ["netns", "pids", ns]);
        for (const pid of pids.text.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
          try {
            Deno.kill(Number(pid), "SIGKILL");
          } catch { /* already gone */ }
        }
      }
      let last: WanStats | undefined;
      if (emu) {
        const e = emu;
        last = await withTimeout(e.send("stats").then(parseStats), 2000).catch(() => undefined);
        await e.closeStdin(); // EOF makes it exit
        const exited = await withTimeout(e.child.status, 2000).catch(() => undefined);
        if (!exited) {
          try {
            e.child.kill("SIGKILL");
          } catch { /* gone */ }
          await e.child.status;
        }
        await e.done.catch(() => {});
      }
      for (const ns of made) await run("ip", ["netns", "del", ns]);
      return last;
    })();
    return closed;
  };

  try {
    for (const ns of [clientNs, serverNs]) {
      await must("ip", ["netns", "add", ns]);
      made.push(ns);
      // before the TUN arrives, so it inherits these defaults: no IPv6 chatter, no rp_filter
      await run("ip", [
        "netns",
        "exec",
        ns,
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
      ]);
    }
    const bin = await buildLinkemu();
    const args = [
      "--tun-client",
      tunC,
      "--tun-server",
      tunS,
      "--rate-mbit",
      String(opts.rateMbit),
      "--rtt-ms",
      String(opts.rttMs),
      "--loss",
      String(opts.loss),
      "--seed",
      String(opts.seed ?? 1),
    ];
    if (opts.queueBytes !== undefined) args.push("--queue-bytes", String(opts.queueBytes));
    if (opts.shared) args.push("--shared");
    for (const o of opts.links ?? []) {
      const f = (v: number | undefined) => v === undefined ? "" : String(v);
      args.push(
        "--link",
        `${o.server}:${f(o.rateMbit)}:${f(o.rttMs)}:${f(o.loss)}:${f(o.queueBytes)}`,
      );
    }
    emu = new EmulatorLink(
      new Deno.Command(bin, { args, stdin: "piped", stdout: "piped", stderr: "piped" }).spawn(),
    );
    const ready = await withTimeout(emu.ready(), 10_000);
    if (!ready) throw new Error("linkemu did not get ready within 10 s");

    await must("ip", ["link", "set", tunC, "netns", clientNs]);
    await must("ip", ["link", "set", tunS, "netns", serverNs]);
    const c = ["-n", clientNs];
    const s = ["-n", serverNs];
    await must("ip", [...c, "link", "set", "lo", "up"]);
    await must("ip", [...c, "addr", "add", `${CLIENT_ADDR}/32`, "dev", tunC]);
    await must("ip", [...c, "link", "set", tunC, "up"]);
    await must("ip", [...c, "route", "add", "198.18.1.0/24", "dev", tunC, "src", CLIENT_ADDR]);
    await must("ip", [...s, "link", "set", "lo", "up"]);
    for (const a of serverAddrs) await must("ip", [...s, "addr", "add", `${a}/32`, "dev", tunS]);
    await must("ip", [...s, "link", "set", tunS, "up"]);
    await must("ip", [...s, "route", "add", "198.18.0.0/24", "dev", tunS]);
    for (const [ns, dev] of [[clientNs, tunC], [serverNs, tunS]]) {
      await run("ip", [
        "netns",
        "exec",
        ns,
        "sysctl",
        "-q",
        "-w",
        `net.ipv4.conf.${dev}.rp_filter=0`,
      ]);
    }
  } catch (e) {
    await close();
    throw e;
  }
  const link = emu;
  return {
    clientNs,
    serverNs,
    clientAddr: CLIENT_ADDR,
    serverAddrs,
    emulatorPid: link.child.pid,
    async control(cmd: string): Promise<string> {
      const [answer] = await link.send(cmd);
      if (!answer.startsWith("ok ")) throw new Error(`linkemu: ${answer}`);
      return answer;
    },
    async stats(): Promise<WanStats> {
      return parseStats(await link.send("stats"));
    },
    command(side, cmd, args, options = {}) {
      const ns = side === "client" ? clientNs : serverNs;
      return new Deno.Command("ip", { ...options, args: ["netns", "exec", ns, cmd, ...args] });
    },
    close,
  };
}

/**
 * CPU seconds (user + system) a process has used so far, from /proc; undefined if it is gone.
 * Shows whether the emulator kept up (it must stay well below one core).
 */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  // through `cat`: Deno grants /proc only to --allow-all
  const r = await run("cat", [`/proc/${pid}/stat`]).catch(() => undefined);
  if (!r || r.code !== 0) return undefined;
  const f = r.text.slice(r.text.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}
