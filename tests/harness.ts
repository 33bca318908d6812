/**
 * Test harness: real `udpget serve` / `udpget fetch` processes on ephemeral loopback ports,
 * temp dirs, and seeded random files. Every process started here is killed by `stop()`.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { mulberry32 } from "./relay.ts";
import { serve, type ServeOptions, type ServeStats } from "../server.ts";
import { decode, type Packet } from "../lib/wire/packet.ts";
import { withTimeout } from "../lib/io/timer.ts";

/** Path of main.ts. */
export const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** Runtime flags for running main.ts as a user would (those `bin/udpget.mjs` passes). */
export const RUN_FLAGS: readonly string[] = [
  "run",
  "--quiet",
  "--unstable-net",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-sys=statfs",
  "--v8-flags=--max-semi-space-size=2",
];

/** A running `udpget` process that listens (`serve`, `tracker`). */
export interface ListeningProcess {
  port: number;
  /** Its process id (to read `/proc/<pid>/status`). */
  pid: number;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Resolves true once its output matches `re`, false if it exits first. */
  until(re: RegExp): Promise<boolean>;
  /** Sends `signal` and goes on (a process that already exited is left alone). */
  kill(signal: Deno.Signal): void;
  /** Sends `signal` (default SIGTERM) and waits for the exit status. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus>;
}

/** A running `udpget serve`. */
export type ServerProcess = ListeningProcess;

/**
 * Starts `udpget <args>` and waits for its listening line, whose port `portLine` captures;
 * `what` names it in the error when it exits before listening.
 */
export async function startListening(
  args: string[],
  portLine: RegExp,
  what: string,
): Promise<ListeningProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let text = "";
  const dec = new TextDecoder();
  let portFound!: (port: number) => void;
  const listening = new Promise<number>((r) => portFound = r);
  const waiters = new Set<{ re: RegExp; done: (found: boolean) => void }>();
  let ended = false;
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      text += dec.decode(chunk, { stream: true });
      const m = text.match(portLine);
      if (m) portFound(Number(m[1]));
      for (const w of waiters) if (w.re.test(text)) (waiters.delete(w), w.done(true));
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const exited = child.status.then(async (s) => {
    portFound(-1);
    await pumps;
    ended = true;
    for (const w of waiters) w.done(w.re.test(text));
    waiters.clear();
    return s;
  });
  const port = await listening;
  let status: Deno.CommandStatus | undefined;
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // already exited
    }
  };
  const proc: ListeningProcess = {
    port,
    pid: child.pid,
    output: () => text,
    until: (re) =>
      re.test(text) || ended
        ? Promise.resolve(re.test(text))
        : new Promise((done) => waiters.add({ re, done })),
    kill,
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (status) return status;
      kill(signal);
      status = await exited;
      await pumps;
      return status;
    },
  };
  if (port < 0) {
    await proc.stop();
    throw new Error(`${what} did not start: ${text}`);
  }
  return proc;
}

/**
 * Starts `udpget serve 0 --root <root> --host <host>` and waits for its listening line. Unless
 * `extra` says otherwise it runs with `--no-cache`: tests must not write into the user's cache.
 */
export function startServer(
  root: string,
  extra: string[] = [],
  host = "127.0.0.1",
): Promise<ServerProcess> {
  const cache = extra.includes("--cache-dir") || extra.includes("--no-cache") ? [] : ["--no-cache"];
  return startListening(
    ["serve", "0", "--root", root, "--host", host, ...cache, ...extra],
    /on udp [^\s"]+:(\d+)[ \n"]/, // (text or JSON log format)
    "server",
  );
}

/** Result of one `udpget fetch` run. */
export interface FetchRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A guard, not a timing assertion: a run still going after this long is a hang (a bug), and is
 * killed so the suite fails with a message instead of stalling CI.
 */
export const HANG_GUARD_MS = 180_000;

/** Runs `udpget <args>` in `cwd` to completion. */
export async function runUdpget(args: string[], cwd: string): Promise<FetchRun> {
  const child = spawnUdpget(args, cwd);
  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, HANG_GUARD_MS);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    const run = { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    if (hung) throw new Error(`udpget ${args.join(" ")} hung; killed. stderr: ${run.stderr}`);
    return run;
  } finally {
    clearTimeout(guard);
  }
}

/** Starts `udpget <args>` in `cwd` without waiting; the caller must await `.status`. */
export function spawnUdpget(args: string[], cwd: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, MAIN, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Deterministic pseudo-random bytes, so failures can be reproduced. */
export function seededBytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  const random = mulberry32(seed);
  const view = new DataView(out.buffer);
  let i = 0;
  for (; i + 4 <= size; i += 4) view.setUint32(i, random() * 4294967296);
  for (; i < size; i++) out[i] = random() * 256;
  return out;
}

/** A fresh temp dir, removed by `cleanup()`. */
export async function tempDir(): Promise<{ path: string; cleanup(): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix: "udpget_test_" });
  return { path, cleanup: () => Deno.remove(path, { recursive: true }).catch(() => {}) };
}

/** Writes a servers file listing loopback `ports` and returns its path. */
export async function writeServersFile(dir: string, ports: number[]): Promise<string> {
  const path = `${dir}/servers.txt`;
  await Deno.writeTextFile(path, ports.map((p) => `127.0.0.1 ${p}`).join("\n"));
  return path;
}

/** True when the two byte arrays are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True if `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** A `serve()` running inside the test process (so its counters can be read). */
export interface InProcessServer {
  port: number;
  /** Stops it and resolves with its counters (idempotent). */
  stop(): Promise<ServeStats>;
}

/**
 * Starts `serve()` on an ephemeral loopback port over `root` with 64 KiB pieces; `over`
 * replaces any of those options (a log sink, a digest function, a cache directory...).
 */
export async function serveInProcess(
  root: string,
  over: Partial<ServeOptions> = {},
): Promise<InProcessServer> {
  const abort = new AbortController();
  let listening!: (port: number) => void;
  const port = new Promise<number>((r) => listening = r);
  const done = serve({
    port: 0,
    host: "127.0.0.1",
    root,
    pieceSize: 1 << 16,
    log: () => {},
    ...over,
    signal: abort.signal,
    onListening: (a) => listening(a.port),
  });
  return {
    port: await Promise.race([port, done.then(() => -1)]),
    stop: () => {
      abort.abort();
      return done;
    },
  };
}

/** A raw client socket that decodes what it receives into `packets` (those `keep` accepts). */
export class PacketInbox {
  /** Decoded packets received so far (callers may clear or splice it). */
  readonly packets: Packet[] = [];
  /** The socket, for sending. */
  readonly sock = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  #wake: (() => void) | undefined;
  #loop: Promise<void>;

  /** Starts receiving. */
  constructor(keep: (p: Packet) => boolean = () => true) {
    this.#loop = (async () => {
      try {
        for await (const [data] of this.sock) {
          const r = decode(data);
          if (r.ok && keep(r.packet)) this.packets.push(r.packet);
          this.#wake?.();
        }
      } catch { /* closed */ }
    })();
  }

  /** Resolves true at the next datagram, or undefined after `ms`. */
  next(ms: number): Promise<boolean | undefined> {
    return withTimeout(new Promise<boolean>((r) => this.#wake = () => r(true)), ms);
  }

  /** Closes the socket and ends the receive loop. */
  async close(): Promise<void> {
    this.sock.close();
    await this.#loop;
  }
}

/** Runs `body` with `n` servers over one shared root, all stopped afterwards. */
export async function withServers(
  n: number,
  body: (servers: ServerProcess[], root: string, work: string) => Promise<void>,
  roots?: string[],
  extra: string[] = [],
): Promise<void> {
  const dir = await tempDir();
  const servers: ServerProcess[] = [];
  try {
    const root = `${dir.path}/root`;
    const work = `${dir.path}/work`;
    await Deno.mkdir(root);
    await Deno.mkdir(work);
    for (let i = 0; i < n; i++) servers.push(await startServer(roots?.[i] ?? root, extra));
    await body(servers, root, work);
  } finally {
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    await dir.cleanup();
  }
}

/**
 * Waits for a spawned `udpget serve` (stdout and stderr piped) to print its listening line;
 * throws with what it printed if it exits first. Its output is read to the end, and stderr
 * drained: a server whose log pipe is closed would die on its next line.
 */
export async function untilListening(child: Deno.ChildProcess, what: string): Promise<void> {
  let text = "";
  const listening = new Promise<boolean>((resolve) => {
    (async () => {
      for await (const c of child.stdout.pipeThrough(new TextDecoderStream())) {
        text += c;
        if (/on udp /.test(text)) resolve(true);
      }
      resolve(false);
    })().catch(() => resolve(false));
  });
  child.stderr.pipeTo(new WritableStream()).catch(() => {});
  if (!(await listening)) throw new Error(`${what} did not start: ${text}`);
}
