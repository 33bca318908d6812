/**
 * A file the server may not read is ACCESS_DENIED to the client, not an internal error: the
 * server runs as an unprivileged user (root reads everything), so this needs root to switch
 * users (`setpriv`); elsewhere it says in one line why it is skipped.
 */

import assert from "node:assert/strict";
import { run } from "../wan/wan_path.ts";
import { ExitCode } from "../lib/base/exit.ts";
import { MAIN, RUN_FLAGS, runUdpget, tempDir, writeServersFile } from "./harness.ts";

const NOBODY = "65534";

async function unavailable(): Promise<string | undefined> {
  const id = await run("id", ["-u"]).catch(() => ({ code: -1, text: "" }));
  if (id.code !== 0 || id.text !== "0") return "switching to an unprivileged user needs root";
  const r = await run("setpriv", ["--version"]).catch(() => ({ code: -1, text: "" }));
  return r.code === 0 ? undefined : "setpriv (util-linux) is not installed";
}

const skip = await unavailable();
if (skip) console.log(`access-denied test skipped: ${skip}`);

Deno.test({
  name: "serve: a file the server may not read is ACCESS_DENIED (permission denied), not INTERNAL",
  ignore: skip !== undefined,
  fn: async () => {
    const dir = await tempDir();
    let server: Deno.ChildProcess | undefined;
    try {
      const root = `${dir.path}/root`;
      const denoDir = `${dir.path}/deno`;
      await Deno.mkdir(root);
      await Deno.mkdir(denoDir);
      await Deno.chmod(dir.path, 0o755);
      await Deno.chmod(root, 0o755);
      await run("chown", [`${NOBODY}:${NOBODY}`, denoDir]);
      await Deno.writeTextFile(`${root}/secret.bin`, "not for you");
      await Deno.chmod(`${root}/secret.bin`, 0o000);
      server = new Deno.Command("setpriv", {
        args: [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "env",
          `DENO_DIR=${denoDir}`,
          Deno.execPath(),
          ...RUN_FLAGS,
          MAIN,
          "serve",
          "0",
          "--root",
          root,
          "--host",
          "127.0.0.1",
          "--no-cache",
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      server.stderr.pipeTo(new WritableStream()).catch(() => {});
      let log = "";
      let port = 0;
      for await (const chunk of server.stdout.pipeThrough(new TextDecoderStream())) {
        log += chunk;
        const m = log.match(/on udp 127\.0\.0\.1:(\d+)/);
        if (m) {
          port = Number(m[1]);
          break;
        }
      }
      assert.ok(port > 0, `server did not start: ${log}`);
      const list = await writeServersFile(dir.path, [port]);
      const r = await runUdpget(["fetch", list, "1", "secret.bin"], dir.path);
      assert.equal(r.code, ExitCode.NotFound, r.stderr);
      assert.match(r.stderr, /ACCESS_DENIED: permission denied/);
      assert.doesNotMatch(r.stderr, /INTERNAL/);
    } finally {
      try {
        server?.kill("SIGKILL");
      } catch { /* gone */ }
      await server?.status;
      await dir.cleanup();
    }
  },
});
