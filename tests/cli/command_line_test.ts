/**
 * The command line as a user meets it: the real `udpget` launcher (`bin/udpget.mjs`, run by
 * node), `npm run udpget` and `deno task udpget`, spawned from temp dirs against real
 * `udpget serve` processes on ephemeral loopback ports. Help and error texts, relative paths,
 * the servers list on stdin, and Ctrl-C / Ctrl-D at the prompt through a pseudo-terminal.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { exists, type FetchRun, HANG_GUARD_MS, startServer, tempDir } from "../harness.ts";
import { ExitCode } from "../../lib/base/exit.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const SHIM = `${REPO}bin/udpget.mjs`;
const DENO = Deno.execPath();

/**
 * The environment of a user at a shell. `npm test` runs this suite with INIT_CWD set to the
 * repository; `deno task` keeps an INIT_CWD it inherits (npm replaces it), so the launcher
 * would go back there instead of to the directory the task was started from.
 */
function shellEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.INIT_CWD;
  return env;
}

/** Runs `cmd args` in `cwd` to completion, feeding `stdin` if given; killed if it hangs. */
async function run(cmd: string, args: string[], cwd: string, stdin?: string): Promise<FetchRun> {
  const child = new Deno.Command(cmd, {
    args,
    cwd,
    clearEnv: true,
    env: shellEnv(),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = setTimeout(() => stopLauncher(child), HANG_GUARD_MS);
  try {
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(guard);
    stopLauncher(child);
  }
}

/**
 * Stops a launcher that is still running: SIGTERM first, which it passes on to the udpget
 * process it started (a SIGKILL would leave that one running), SIGKILL a little later.
 */
function stopLauncher(child: Deno.ChildProcess): void {
  try {
    child.kill("SIGTERM");
  } catch {
    return; // already exited: the normal case
  }
  const kill = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited after SIGTERM
    }
  }, 5_000);
  child.status.finally(() => clearTimeout(kill));
}

/** `udpget <args>` through the launcher, as a user with it on PATH would run it. */
function udpget(args: string[], cwd: string, stdin?: string): Promise<FetchRun> {
  return run("node", [SHIM, ...args], cwd, stdin);
}

/** A temp dir with `hello.txt` served from `<dir>/root` by a real server; all cleaned up. */
async function withHelloServer(
  body: (work: string, port: number, content: string) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  const content = "hello from udpget\n";
  await Deno.mkdir(`${dir.path}/root`);
  await Deno.mkdir(`${dir.path}/work`);
  await Deno.writeTextFile(`${dir.path}/root/hello.txt`, content);
  const server = await startServer(`${dir.path}/root`);
  try {
    await body(`${dir.path}/work`, server.port, content);
  } finally {
    await server.stop("SIGKILL");
    await dir.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// help and usage errors
// ---------------------------------------------------------------------------------------------

Deno.test("cli: fetch --help, fetch -h, help fetch (and serve): help on stdout, exit 0", async () => {
  const dir = await tempDir();
  try {
    for (const cmd of ["fetch", "serve"]) {
      for (const args of [[cmd, "--help"], [cmd, "-h"], ["help", cmd], [cmd, "1", "--help"]]) {
        const r = await udpget(args, dir.path);
        assert.equal(r.code, ExitCode.Ok, `${args.join(" ")}: ${r.stderr}`);
        assert.equal(r.stderr, "", args.join(" "));
        assert.match(r.stdout, new RegExp(`^usage: udpget ${cmd} `));
        assert.match(r.stdout, /^ +130 {2}interrupted/m);
      }
    }
    const fetchHelp = (await udpget(["fetch", "--help"], dir.path)).stdout;
    for (const o of ["-o, --output OUT", "-f, --force", "-q, --quiet", "--json", "--limit RATE"]) {
      assert.ok(fetchHelp.includes(o), o);
    }
    const all = await udpget(["--help"], dir.path);
    assert.equal(all.code, ExitCode.Ok);
    for (const o of ["-o, --output", "--log-format", "--no-cache", "-h, --help", "exit codes:"]) {
      assert.ok(all.stdout.includes(o), o);
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("cli: unknown options and missing values are one line naming the subcommand's help", async () => {
  const dir = await tempDir();
  try {
    const cases: [string[], string][] = [
      [["fetch", "s.txt", "2", "f", "--bogus"], "fetch: unknown option --bogus"],
      [["serve", "0", "-x"], "serve: unknown option -x"],
      [["fetch", "s.txt", "2", "f", "--limit"], "fetch: option --limit needs a value (RATE)"],
      [["serve", "0", "--root"], "serve: option --root needs a value (DIR)"],
    ];
    for (const [args, message] of cases) {
      const r = await udpget(args, dir.path);
      assert.equal(r.code, ExitCode.Usage, args.join(" "));
      assert.equal(r.stdout, "");
      assert.equal(r.stderr, `udpget: ${message} (see udpget ${args[0]} --help)\n`);
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("cli: serve --host that is not an address is a usage error (2), not a bind failure", async () => {
  const dir = await tempDir();
  try {
    for (const host of ["1.2.3", "no-such-host.invalid"]) {
      const r = await udpget(["serve", "0", "--host", host], dir.path);
      assert.equal(r.code, ExitCode.Usage, r.stderr);
      assert.equal(r.stderr.split("\n").length, 2, r.stderr); // one line and its newline
      assert.match(r.stderr, /^udpget: serve: --host takes an IPv4 or IPv6 address or localhost/);
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("cli: every bad servers-file line is reported in line order, then exit 2", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(
      `${dir.path}/s.txt`,
      ["nope", "127.0.0.1 9000", "1.2.3.4.5 1", "# fine", "127.0.0.1 0"].join("\n"),
    );
    const r = await udpget(["fetch", "s.txt", "1", "f"], dir.path);
    assert.equal(r.code, ExitCode.Usage);
    const lines = r.stderr.trimEnd().split("\n");
    assert.deepEqual(lines.map((l) => l.match(/^udpget: s\.txt:(\d+): /)?.[1]), ["1", "3", "5"]);
  } finally {
    await dir.cleanup();
  }
});

// ---------------------------------------------------------------------------------------------
// the launcher: paths relative to the caller, no banner, the list on stdin
// ---------------------------------------------------------------------------------------------

Deno.test("launcher: relative servers file and -o resolve against the caller's directory", async () => {
  await withHelloServer(async (work, port, content) => {
    await Deno.mkdir(`${work}/sub`);
    await Deno.writeTextFile(`${work}/servers.txt`, `127.0.0.1 ${port}\n`);
    const r = await udpget(["fetch", "servers.txt", "2", "hello.txt"], work);
    assert.equal(r.code, ExitCode.Ok, r.stderr);
    assert.equal(await Deno.readTextFile(`${work}/hello.txt`), content);
    // nothing but udpget's own one-line summary: no task banner, no Deno notices
    assert.match(r.stderr, /^udpget: hello\.txt: .* verified[^\n]*\n$/);
    assert.equal(r.stdout, "");
    const sub = await udpget(["fetch", "../servers.txt", "1", "hello.txt", "-o", "out/x"], work);
    assert.notEqual(sub.code, ExitCode.Ok, "out/ does not exist yet");
    await Deno.mkdir(`${work}/out`);
    const ok = await udpget(
      ["fetch", "../servers.txt", "1", "hello.txt", "-o", "../out/x"],
      `${work}/sub`,
    );
    assert.equal(ok.code, ExitCode.Ok, ok.stderr);
    assert.equal(await Deno.readTextFile(`${work}/out/x`), content);
    assert.equal(await exists(`${REPO}hello.txt`), false, "nothing written in the repository");
  });
});

Deno.test("launcher: npm run udpget and deno task udpget work on the caller's directory", async () => {
  await withHelloServer(async (work, port, content) => {
    await Deno.writeTextFile(`${work}/servers.txt`, `127.0.0.1 ${port}\n`);
    const npm = await run(
      "npm",
      [
        "--prefix",
        REPO,
        "run",
        "-s",
        "udpget",
        "--",
        "fetch",
        "servers.txt",
        "1",
        "hello.txt",
        "-o",
        "npm.txt",
      ],
      work,
    );
    assert.equal(npm.code, ExitCode.Ok, npm.stderr);
    assert.equal(await Deno.readTextFile(`${work}/npm.txt`), content);
    assert.doesNotMatch(npm.stdout + npm.stderr, /> udpget|Task udpget/);
    const task = await run(
      DENO,
      [
        "task",
        "-q",
        "--config",
        `${REPO}deno.json`,
        "udpget",
        "fetch",
        "servers.txt",
        "1",
        "hello.txt",
        "-o",
        "task.txt",
      ],
      work,
    );
    assert.equal(task.code, ExitCode.Ok, task.stderr);
    assert.equal(await Deno.readTextFile(`${work}/task.txt`), content);
    assert.doesNotMatch(task.stderr, /Task udpget/);
  });
});

Deno.test("launcher: SIGTERM to the launcher reaches udpget, whose exit status comes back", async () => {
  const dir = await tempDir();
  const child = new Deno.Command("node", {
    args: [SHIM, "serve", "0", "--root", ".", "--host", "127.0.0.1"],
    cwd: dir.path,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = setTimeout(() => stopLauncher(child), HANG_GUARD_MS);
  try {
    let text = "";
    let listening!: () => void;
    const bound = new Promise<void>((r) => listening = r);
    const pump = (async () => {
      for await (const chunk of child.stdout) {
        text += new TextDecoder().decode(chunk);
        if (text.includes(" on udp ")) listening();
      }
      listening(); // ended without the line: the assertions below say so
    })();
    const stderr = new Response(child.stderr).text();
    // the listening line is printed once the socket is bound: only then signal
    await bound;
    assert.ok(text.includes(`serving ${dir.path} on udp`), `--root . is the caller's: ${text}`);
    child.kill("SIGTERM"); // the launcher's pid only, not udpget's
    const status = await child.status;
    await pump;
    assert.equal(status.code, ExitCode.Ok, await stderr);
    assert.match(text, /stopped: \d+ requests/, "udpget itself shut down cleanly");
  } finally {
    clearTimeout(guard);
    stopLauncher(child);
    await child.status;
    await dir.cleanup();
  }
});

Deno.test("cli: a servers file of - or /dev/stdin is read from stdin", async () => {
  await withHelloServer(async (work, port, content) => {
    for (const name of ["-", "/dev/stdin"]) {
      const out = `from_${name.replaceAll("/", "_")}.txt`;
      const r = await udpget(
        ["fetch", name, "1", "hello.txt", "-o", out],
        work,
        `127.0.0.1 ${port}\n`,
      );
      assert.equal(r.code, ExitCode.Ok, `${name}: ${r.stderr}`);
      assert.equal(await Deno.readTextFile(`${work}/${out}`), content);
    }
    const bad = await udpget(["fetch", "-", "1", "hello.txt"], work, "nope\n");
    assert.equal(bad.code, ExitCode.Usage);
    assert.equal(
      bad.stderr,
      'udpget: <stdin>:1: expected "host port", "host:port" or "[v6addr]:port"\n',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// the prompt, on a pseudo-terminal
// ---------------------------------------------------------------------------------------------

/**
 * Runs argv on a pseudo-terminal, waits for `File to fetch:`, types `key`, and prints
 * `{"code": N, "output": "..."}`. Python's pty module because Deno has no pty API.
 */
const PTY_DRIVER = `
import json, os, pty, select, sys
key = sys.argv[1].encode("latin-1")
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out = b""
def pump():
    global out
    try:
        d = os.read(fd, 4096)
    except OSError:
        return False
    out += d
    return bool(d)
while b"File to fetch:" not in out:
    if not pump():
        break
os.write(fd, key)
while pump():
    pass
_, status = os.waitpid(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "output": out.decode("utf-8", "replace")}))
`;

const hasPython = await new Deno.Command("python3", {
  args: ["-c", "import pty"],
  stdout: "null",
  stderr: "null",
})
  .output().then((o) => o.success, () => false);
if (!hasPython) {
  console.error("tests/cli/command_line_test.ts: python3 with pty missing: prompt tests ignored");
}

/** `udpget fetch servers.txt 1` on a terminal; `key` is typed at the prompt. */
async function atPrompt(key: string): Promise<{ code: number; output: string }> {
  const dir = await tempDir();
  try {
    // nothing is sent before a name is given, so the port need not be served
    await Deno.writeTextFile(`${dir.path}/servers.txt`, "127.0.0.1 9\n");
    const r = await run("python3", [
      "-c",
      PTY_DRIVER,
      key,
      "node",
      SHIM,
      "fetch",
      "servers.txt",
      "1",
    ], dir.path);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  } finally {
    await dir.cleanup();
  }
}

Deno.test({
  name: "prompt: Ctrl-C at File to fetch: is exit 130 (interrupted), Ctrl-D is exit 2",
  ignore: !hasPython,
  async fn() {
    const c = await atPrompt("\x03");
    assert.equal(c.code, ExitCode.Interrupted, c.output);
    assert.match(c.output, /udpget: interrupted/);
    const d = await atPrompt("\x04");
    assert.equal(d.code, ExitCode.Usage, d.output);
    assert.match(d.output, /udpget: no file name given/);
  },
});
