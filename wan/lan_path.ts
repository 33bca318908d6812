/**
 * A plain LAN for benchmarks and tests: two network namespaces joined by one veth pair, no rate
 * limit, no delay, no loss, at the MTUs asked for (the two ends may differ: a mismatch drops
 * larger frames silently, as a switch with a smaller MTU does). Needs root and `ip`.
 *
 * @module
 */

import { must, run } from "./wan_path.ts";
import { withTimeout } from "../lib/io/timer.ts";

/** The client's address. */
export const CLIENT_ADDR = "198.18.0.1";
/** The servers' addresses, all on the server end: three hosts, as far as the client can tell. */
export const SERVER_ADDRS = ["198.18.0.2", "198.18.0.3", "198.18.0.4"];

/** A namespace of the pair. */
export type LanSide = "client" | "server";

/** Options of {@link openLanPath}. */
export interface LanPathOptions {
  /** MTU of the client's end (and of the server's unless `serverMtu` is given). */
  mtu: number;
  /** MTU of the server's end. */
  serverMtu?: number;
}

/** The two namespaces and what runs in them. */
export interface LanPath {
  /** MTU of the client's end. */
  mtu: number;
  clientAddr: string;
  serverAddrs: string[];
  /** Starts `argv` in one namespace; tracked, so `close()` stops it. */
  spawn(side: LanSide, argv: string[], options?: Deno.CommandOptions): Deno.ChildProcess;
  /** Runs `argv` in one namespace to the end. */
  output(side: LanSide, argv: string[]): Promise<Deno.CommandOutput>;
  /** Stops the given children (SIGTERM, then SIGKILL after 5 s). */
  stop(children: Deno.ChildProcess[]): Promise<void>;
  /** Stops everything, kills whatever is left in the namespaces, deletes them. Idempotent. */
  close(): Promise<void>;
}

let opened = 0;
let availability: Promise<string | undefined> | undefined;

/** Why a LAN path cannot be opened here (one line), or undefined when it can. */
export function lanAvailable(): Promise<string | undefined> {
  availability ??= (async () => {
    const tryRun = (cmd: string, args: string[]) =>
      run(cmd, args).catch(() => ({ code: -1, text: `${cmd} not found` }));
    const id = await tryRun("id", ["-u"]);
    if (id.code !== 0 || id.text !== "0") return "a LAN path needs root (network namespaces)";
    if ((await tryRun("ip", ["-V"])).code !== 0) return "a LAN path needs `ip` (iproute2)";
    const probe = `udpl-probe-${Deno.pid}`;
    const add = await tryRun("ip", ["netns", "add", probe]);
    if (add.code !== 0) return `a LAN path cannot create network namespaces: ${add.text}`;
    await tryRun("ip", ["netns", "del", probe]);
    return undefined;
  })();
  return availability;
}

function kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch { /* already gone */ }
}

/**
 * Two fresh namespaces joined by a veth pair; the client end has 198.18.0.1/24, the server end
 * 198.18.0.2-4/24. Only links, MTUs, addresses and loopback are set: every sysctl keeps the
 * kernel's default for a new namespace. Throws (after cleaning up) if a step fails.
 */
export async function openLanPath(opts: LanPathOptions): Promise<LanPath> {
  const { mtu, serverMtu = mtu } = opts;
  const id = `${Deno.pid}-${++opened}`; // unique per process and call: tests run in parallel
  const ns = { client: `udpl-c-${id}`, server: `udpl-s-${id}` };
  const made: string[] = [];
  const children = new Set<Deno.ChildProcess>();
  let closed: Promise<void> | undefined;

  const stop = async (list: Deno.ChildProcess[]) => {
    // TERM first: nginx's master stops its worker on TERM, udpget serve logs its totals
    for (const c of list) kill(c.pid, "SIGTERM");
    const done = await withTimeout(Promise.allSettled(list.map((c) => c.status)), 5000);
    if (!done) {
      for (const c of list) kill(c.pid, "SIGKILL");
      await Promise.allSettled(list.map((c) => c.status));
    }
    for (const c of list) children.delete(c);
  };

  const close = () => {
    closed ??= (async () => {
      await stop([...children]);
      // whatever is left (an nginx worker whose master died, a tool under a killed
      // /usr/bin/time) would keep a namespace alive after `ip netns del`: kill it by pid
      for (const n of made) {
        const pids = await run("ip", ["netns", "pids", n]);
        for (const pid of pids.text.split(/\s+/).filter((p) => /^\d+$/.test(p))) {
          kill(Number(pid), "SIGKILL");
        }
      }
      for (const n of made) await run("ip", ["netns", "del", n]);
    })();
    return closed;
  };

  const lan: LanPath = {
    mtu,
    clientAddr: CLIENT_ADDR,
    serverAddrs: SERVER_ADDRS,
    spawn(side, argv, options = {}) {
      const child = new Deno.Command("ip", {
        stdin: "null",
        ...options,
        args: ["netns", "exec", ns[side], ...argv],
      }).spawn(); // `ip netns exec` execs in place: child.pid is the tool's own pid
      children.add(child);
      child.status.then(() => children.delete(child));
      return child;
    },
    output(side, argv) {
      return new Deno.Command("ip", {
        args: ["netns", "exec", ns[side], ...argv],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
    },
    stop,
    close,
  };

  try {
    for (const n of [ns.client, ns.server]) {
      await must("ip", ["netns", "add", n]);
      made.push(n);
    }
    const c = ["-n", ns.client];
    const s = ["-n", ns.server];
    // created inside the client namespace, so the names never meet the root namespace's
    await must("ip", [...c, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"]);
    await must("ip", [...c, "link", "set", "lan1", "netns", ns.server]);
    await must("ip", [...c, "link", "set", "lan0", "mtu", String(mtu)]);
    await must("ip", [...s, "link", "set", "lan1", "mtu", String(serverMtu)]);
    await must("ip", [...c, "addr", "add", `${CLIENT_ADDR}/24`, "dev", "lan0"]);
    for (const a of SERVER_ADDRS) await must("ip", [...s, "addr", "add", `${a}/24`, "dev", "lan1"]);
    for (const side of [c, s]) await must("ip", [...side, "link", "set", "lo", "up"]);
    await must("ip", [...c, "link", "set", "lan0", "up"]);
    await must("ip", [...s, "link", "set", "lan1", "up"]);
  } catch (e) {
    await close();
    throw e;
  }
  return lan;
}
