/**
 * Test fixture for swarms of real processes: `udpget fetch --tracker` runs with their output
 * collected, and a file with a tracker and one capped server. Every process started here is
 * killed by `close()` or `kill()`.
 *
 * @module
 */

import {
  MAIN,
  RUN_FLAGS,
  seededBytes,
  type ServerProcess,
  startServer,
  tempDir,
  writeServersFile,
} from "../harness.ts";
import { startTracker, type TrackerProcess } from "../tracker/tracker_process.ts";
import type { FetchReport } from "../../lib/cli/fetch_report.ts";
import { sha256 } from "../../lib/io/file_digest.ts";

/** A running `udpget fetch` with its output collected. */
export interface Fetcher {
  child: Deno.ChildProcess;
  out: string;
  stderr(): string;
  /** Resolves once stderr matches `re` (false if it exits first). */
  until(re: RegExp): Promise<boolean>;
  done: Promise<{ code: number; report: FetchReport | undefined; stderr: string }>;
}

/**
 * Starts `udpget fetch servers.txt 2 f.bin -o out<i>.bin --json --tracker ...` in `dir`, with
 * Deno's `flags` (default the suite's).
 */
export function fetcher(
  dir: string,
  i: number,
  tracker: number,
  extra: string[] = [],
  env = {},
  flags: readonly string[] = RUN_FLAGS,
): Fetcher {
  const out = `out${i}.bin`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      ...flags,
      MAIN,
      "fetch",
      "servers.txt",
      "2",
      "f.bin",
      "-o",
      out,
      "--json",
      "--tracker",
      `127.0.0.1:${tracker}`,
      ...extra,
    ],
    cwd: dir,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  const waiters = new Set<{ re: RegExp; done: (ok: boolean) => void }>();
  const errPump = (async () => {
    for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) {
      err += c;
      for (const w of waiters) if (w.re.test(err)) (waiters.delete(w), w.done(true));
    }
    for (const w of waiters) w.done(false);
  })();
  const stdout = new Response(child.stdout).text();
  const done = (async () => {
    const status = await child.status;
    await errPump;
    const text = await stdout;
    let report: FetchReport | undefined;
    try {
      report = JSON.parse(text.trim().split("\n")[0]);
    } catch {
      report = undefined;
    }
    return { code: status.code, report, stderr: err };
  })();
  return {
    child,
    out: `${dir}/${out}`,
    stderr: () => err,
    until: (re) =>
      re.test(err) ? Promise.resolve(true) : new Promise((d) => waiters.add({ re, done: d })),
    done,
  };
}

/** Kills a fetcher (if it is still running). */
export function kill(f: Fetcher): void {
  try {
    f.child.kill("SIGKILL");
  } catch {
    // already exited
  }
}

/** A swarm's fixture: a file, a tracker and one capped server, all stopped by `close`. */
export async function swarm(size: number, rate: string, seed: number) {
  const dir = await tempDir();
  const root = `${dir.path}/root`;
  await Deno.mkdir(root);
  const data = seededBytes(size, seed);
  await Deno.writeFile(`${root}/f.bin`, data);
  let tracker: TrackerProcess | undefined;
  let server: ServerProcess | undefined;
  const fetchers: Fetcher[] = [];
  try {
    tracker = await startTracker();
    server = await startServer(root, ["--rate", rate]);
    await writeServersFile(dir.path, [server.port]);
  } catch (e) {
    await tracker?.stop("SIGKILL");
    await server?.stop("SIGKILL");
    await dir.cleanup();
    throw e;
  }
  return {
    dir: dir.path,
    data,
    tracker: tracker!,
    server: server!,
    fetchers,
    start(i: number, extra: string[] = [], env = {}): Fetcher {
      const f = fetcher(dir.path, i, tracker!.port, extra, env);
      fetchers.push(f);
      return f;
    },
    async close() {
      for (const f of fetchers) kill(f);
      await Promise.all(fetchers.map((f) => f.done.catch(() => {})));
      await tracker!.stop("SIGKILL");
      await server!.stop("SIGKILL");
      await dir.cleanup();
    },
  };
}

/** Whether the file at `path` has `data`'s bytes. */
export async function sameAsSource(path: string, data: Uint8Array): Promise<boolean> {
  const got = await Deno.readFile(path);
  return got.length === data.length && sha256(got).every((b, i) => b === sha256(data)[i]);
}
