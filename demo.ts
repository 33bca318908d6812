/**
 * `deno task demo`: three `udpget serve` processes on loopback, one generated file fetched
 * from all three with the progress line visible, verified byte for byte, servers stopped.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { seededBytes, type ServerProcess, startServer, tempDir } from "./tests/harness.ts";
import { fileURLToPath } from "node:url";

const SIZE = 96 << 20;
const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function demo(): Promise<number> {
  const dir = await tempDir();
  const servers: ServerProcess[] = [];
  try {
    const root = `${dir.path}/served`;
    await Deno.mkdir(root);
    const data = seededBytes(SIZE, 2026);
    await Deno.writeFile(`${root}/demo.bin`, data);
    console.log(`demo: generated ${root}/demo.bin (${SIZE} bytes, sha256 ${sha256Hex(data)})`);
    for (let i = 0; i < 3; i++) servers.push(await startServer(root));
    const list = `${dir.path}/servers.txt`;
    await Deno.writeTextFile(list, servers.map((s) => `127.0.0.1 ${s.port}`).join("\n"));
    console.log(`demo: servers on 127.0.0.1 ports ${servers.map((s) => s.port).join(", ")}`);
    const args = ["fetch", list, "3", "demo.bin", "-o", "fetched.bin"];
    console.log(`demo: udpget ${args.join(" ")}`);
    const fetch = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--unstable-net",
        "-A",
        "--v8-flags=--max-semi-space-size=2",
        MAIN,
        ...args,
      ],
      cwd: dir.path,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (fetch.code !== 0) {
      console.error(`demo: fetch failed with exit code ${fetch.code}`);
      return fetch.code;
    }
    const got = await Deno.readFile(`${dir.path}/fetched.bin`);
    const same = sha256Hex(got) === sha256Hex(data);
    console.log(`demo: fetched.bin ${same ? "is identical to" : "DIFFERS from"} the source`);
    return same ? 0 : 1;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await dir.cleanup();
    console.log("demo: servers stopped, temp files removed");
  }
}

Deno.exit(await demo());
