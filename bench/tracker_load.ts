/**
 * Tracker load bench: floods a `udpget tracker` process on loopback with BEP 15 announces for
 * 100 000 peers in 1 000 swarms (100 each), twice: the first pass lists every peer, the second
 * re-announces them (the steady state: one announce per peer per interval). Reports announces
 * per second for each pass and the tracker's memory (VmHWM and VmRSS from /proc/PID/status).
 *
 * The tracker runs with `--source-rate 0 --peers-per-address 0`, since every announce comes from
 * one address here.
 * Peers differ by the port they announce (the tracker lists address + announced port). The
 * load comes from one socket with a window of requests in flight, matched to replies by
 * transaction id; a request unanswered for 500 ms is sent again, so a datagram lost to a full
 * receive buffer costs time, not the run. On a 2-core machine the generator and the tracker
 * share the cores: the figure is a floor for the tracker alone.
 *
 * The same flood goes to opentracker (the Debian package; whitelist mode with the 1 000
 * info-hashes, since the packaged build only tracks listed ones), in the same run, for the
 * comparison the README gives.
 *
 * `deno run -A bench/tracker_load.ts [udpget|opentracker]` prints one JSON object per tracker;
 * `runTrackerLoad` is for bench.ts.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { BENCH_RUN_FLAGS } from "./runtime_flags.ts";
import {
  encodeAnnounceRequest,
  encodeConnectRequest,
  parseResponse,
} from "../lib/tracker/bep15_packet.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** What one run measures. */
export interface TrackerLoadResult {
  /** "udpget" or "opentracker". */
  tracker: string;
  peers: number;
  swarms: number;
  /** Announces per second while every peer is new (inserts), and while re-announcing. */
  firstPassPerSecond: number;
  secondPassPerSecond: number;
  /** Requests sent again after 500 ms without an answer. */
  resent: number;
  /** The tracker's peak and current resident memory (KiB), after both passes. */
  vmHwmKiB: number;
  vmRssKiB: number;
}

/** Options of {@linkcode runTrackerLoad}. */
export interface TrackerLoadOptions {
  swarms?: number;
  peersPerSwarm?: number;
  /** Requests in flight at once. */
  window?: number;
  /** Which tracker to flood (default udpget). */
  tracker?: "udpget" | "opentracker";
}

/** Starts the tracker, runs both passes, stops it; resolves with the figures. */
export async function runTrackerLoad(o: TrackerLoadOptions = {}): Promise<TrackerLoadResult> {
  const swarms = o.swarms ?? 1000;
  const perSwarm = o.peersPerSwarm ?? 100;
  const which = o.tracker ?? "udpget";
  const jail = which === "opentracker" ? await opentrackerJail(swarms) : undefined;
  const fixedPort = jail ? freePort() : 0;
  const child = jail
    ? new Deno.Command("opentracker", {
      args: [
        "-i",
        "127.0.0.1",
        "-p",
        String(fixedPort),
        "-P",
        String(fixedPort),
        "-d",
        jail,
        "-w",
        "/whitelist",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn()
    : new Deno.Command(Deno.execPath(), {
      args: [
        ...BENCH_RUN_FLAGS,
        MAIN,
        "tracker",
        "0",
        "--host",
        "127.0.0.1",
        "--source-rate",
        "0",
        "--peers-per-address",
        "0",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  const sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  try {
    const port = jail ? fixedPort : await listeningPort(child.stdout);
    const load = new Load(sock, port, swarms, perSwarm, o.window ?? 128);
    const first = await load.pass();
    const second = await load.pass();
    const mem = await memoryOf(child.pid);
    return {
      tracker: which,
      peers: swarms * perSwarm,
      swarms,
      firstPassPerSecond: Math.round(first),
      secondPassPerSecond: Math.round(second),
      resent: load.resent,
      ...mem,
    };
  } finally {
    sock.close();
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
    if (jail) await Deno.remove(jail, { recursive: true }).catch(() => {});
  }
}

/** A free UDP port on loopback (bound and released: opentracker takes a port, not 0). */
function freePort(): number {
  const s = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const port = (s.addr as Deno.NetAddr).port;
  s.close();
  return port;
}

/**
 * opentracker's directory: it chroots into it and drops privileges, then reads `/whitelist`
 * there; the info-hashes are the flood's (swarm number in the first 4 bytes).
 */
async function opentrackerJail(swarms: number): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "udpget_otload_" });
  await Deno.chmod(dir, 0o755);
  const lines: string[] = [];
  for (let i = 0; i < swarms; i++) lines.push(i.toString(16).padStart(8, "0") + "0".repeat(32));
  await Deno.writeTextFile(`${dir}/whitelist`, lines.join("\n") + "\n");
  await Deno.chmod(`${dir}/whitelist`, 0o644);
  return dir;
}

/** Reads the tracker's stdout until its listening line; the port it names. */
async function listeningPort(stdout: ReadableStream<Uint8Array>): Promise<number> {
  let text = "";
  const dec = new TextDecoder();
  const reader = stdout.getReader();
  while (true) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`tracker exited before listening: ${text}`);
    text += dec.decode(value, { stream: true });
    const m = text.match(/listening on udp [^\s]+:(\d+) /);
    if (m) {
      // keep draining so the tracker never blocks on a full pipe
      (async () => {
        while (!(await reader.read()).done) { /* discard */ }
      })().catch(() => {});
      return Number(m[1]);
    }
  }
}

/** VmHWM and VmRSS of process `pid` (KiB). */
async function memoryOf(pid: number): Promise<{ vmHwmKiB: number; vmRssKiB: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { vmHwmKiB: kib("VmHWM"), vmRssKiB: kib("VmRSS") };
}

/**
 * The announce flood: a window of requests in flight, resent after 500 ms of silence. One
 * receive loop takes every reply (Deno allows one pending receive per socket); the connection id
 * is renewed in the background every 50 s, the old one staying good meanwhile (2 minutes).
 */
class Load {
  resent = 0;
  #sock: Deno.DatagramConn;
  #to: Deno.NetAddr;
  #swarms: number;
  #perSwarm: number;
  #window: number;
  #connectionId: Uint8Array | undefined;
  #connectedAt = -Infinity;
  #renewing = false;
  #tid = 1;
  #pending = new Map<number, { peer: number; sentAt: number }>();
  /** Called once per announce reply that matched a pending request. */
  #onAnswer: () => void = () => {};
  #onConnected: () => void = () => {};

  constructor(
    sock: Deno.DatagramConn,
    port: number,
    swarms: number,
    perSwarm: number,
    window: number,
  ) {
    this.#sock = sock;
    this.#to = { transport: "udp", hostname: "127.0.0.1", port };
    this.#swarms = swarms;
    this.#perSwarm = perSwarm;
    this.#window = window;
    this.#receive().catch(() => {}); // ends when the socket is closed
  }

  /** Announces every peer once; resolves with announces per second. */
  async pass(): Promise<number> {
    if (this.#connectionId === undefined) await this.#connect();
    const total = this.#swarms * this.#perSwarm;
    const start = performance.now();
    let next = 0;
    let answered = 0;
    const finished = new Promise<void>((resolve) => {
      this.#onAnswer = () => {
        answered++;
        if (next < total) this.#send(next++);
        if (answered === total) resolve();
      };
    });
    const resend = setInterval(() => {
      const now = performance.now();
      for (const [tid, p] of this.#pending) {
        if (now - p.sentAt < 500) continue;
        this.#pending.delete(tid);
        this.resent++;
        this.#send(p.peer);
      }
    }, 100);
    try {
      while (next < Math.min(this.#window, total)) this.#send(next++);
      await finished;
    } finally {
      clearInterval(resend);
    }
    return total / ((performance.now() - start) / 1000);
  }

  #send(peer: number): void {
    if (performance.now() - this.#connectedAt > 50_000) this.#renew();
    const tid = this.#tid++ >>> 0;
    this.#pending.set(tid, { peer, sentAt: performance.now() });
    this.#sock.send(this.#announce(peer, tid), this.#to).catch(() => {}); // lost: resent
  }

  async #receive(): Promise<void> {
    const buf = new Uint8Array(2048);
    while (true) {
      const [data] = await this.#sock.receive(buf);
      const r = parseResponse(data, "ipv4");
      if (r?.action === "connect") {
        this.#connectionId = r.connectionId;
        this.#connectedAt = performance.now();
        this.#renewing = false;
        this.#onConnected();
      } else if (r?.action === "announce" && this.#pending.delete(r.transactionId)) {
        this.#onAnswer();
      }
    }
  }

  /** Asks for a new connection id without waiting for it. */
  #renew(): void {
    if (this.#renewing) return;
    this.#renewing = true;
    this.#sock.send(encodeConnectRequest(0), this.#to).catch(() => {});
    setTimeout(() => this.#renewing = false, 1000); // lost: asked again at the next send
  }

  /** Waits for a first connection id, asking again every 200 ms. */
  async #connect(): Promise<void> {
    const connected = new Promise<void>((resolve) => this.#onConnected = resolve);
    for (let attempt = 0; attempt < 25 && this.#connectionId === undefined; attempt++) {
      await this.#sock.send(encodeConnectRequest(attempt), this.#to);
      await Promise.race([connected, new Promise((r) => setTimeout(r, 200))]);
    }
    if (this.#connectionId === undefined) throw new Error("the tracker does not answer connects");
  }

  /** Peer `n`: swarm n mod swarms (its info-hash carries the number), port 10000 + n / swarms. */
  #announce(n: number, tid: number): Uint8Array {
    const swarm = n % this.#swarms;
    const infoHash = new Uint8Array(20);
    new DataView(infoHash.buffer).setUint32(0, swarm);
    return encodeAnnounceRequest({
      connectionId: this.#connectionId!,
      transactionId: tid,
      infoHash,
      peerId: new Uint8Array(20).fill(n & 0xff),
      downloaded: 0n,
      left: n % 4 === 0 ? 0n : 1000n, // a quarter seeders
      uploaded: 0n,
      event: "none",
      ip: 0,
      key: n,
      numWant: -1,
      port: 10_000 + Math.floor(n / this.#swarms),
    });
  }
}

if (import.meta.main) {
  const only = Deno.args[0];
  for (const tracker of ["udpget", "opentracker"] as const) {
    if (only === undefined || only === tracker) {
      console.log(JSON.stringify(await runTrackerLoad({ tracker })));
    }
  }
}
