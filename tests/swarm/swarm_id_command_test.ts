import assert from "node:assert/strict";
import { runUdpget, seededBytes, tempDir } from "../harness.ts";
import { autoPieceSize, digestFile } from "../../lib/io/file_digest.ts";
import { infoHashHex, swarmId } from "../../lib/swarm/swarm_id.ts";

Deno.test("udpget swarm-id prints the info-hash of the file as servers describe it", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir.path}/f.bin`;
    await Deno.writeFile(path, seededBytes(3_000_000, 5));
    const ok = await runUdpget(["swarm-id", "--piece-size", "65536", "f.bin"], dir.path);
    assert.equal(ok.code, 0, ok.stderr);
    using file = await Deno.open(path);
    const want = infoHashHex(swarmId(await digestFile(file, 3_000_000, 65536)));
    assert.equal(ok.stdout, `${want}  f.bin\n`);
    const other = await runUdpget(["swarm-id", "f.bin"], dir.path);
    assert.notEqual(other.stdout.slice(0, 40), want, "another piece size, another swarm");
    // without --piece-size: the size a server picks for this file by itself
    const auto = infoHashHex(swarmId(await digestFile(file, 3_000_000, autoPieceSize(3_000_000))));
    assert.equal(other.stdout, `${auto}  f.bin\n`);
    const missing = await runUdpget(["swarm-id", "nope.bin"], dir.path);
    assert.equal(missing.code, 6);
    assert.match(missing.stderr, /^udpget: swarm-id: cannot open nope\.bin: .+\n$/);
  } finally {
    await dir.cleanup();
  }
});
