import assert from "node:assert/strict";
import { bytesNeeded, freeBytes, reserveSpace, roomShortfall } from "../../lib/io/disk_space.ts";
import { loadLibc } from "../../lib/io/udp/libc.ts";
import { ioMessage } from "../../lib/base/exit.ts";

Deno.test("disk space: what a download still needs, and the line when it does not fit", () => {
  assert.equal(bytesNeeded(100, 30), 70, "a resumed .part needs only its holes");
  assert.equal(bytesNeeded(100, 4096), 0);
  assert.equal(roomShortfall("f.part", 70, 70), undefined, "exactly fits");
  assert.equal(roomShortfall("f.part", 70, undefined), undefined, "unknown: the writes will tell");
  assert.equal(
    roomShortfall("f.part", 64 << 20, 20 << 20),
    "not enough space for f.part: 64 MiB needed, 20 MiB free",
  );
});

Deno.test("disk space: free bytes of a real file system; none where it cannot be read", async () => {
  const free = await freeBytes(await Deno.makeTempDir());
  assert.ok(free !== undefined && free > 0);
  assert.equal(await freeBytes("/no/such/dir"), undefined);
});

Deno.test("disk space: fallocate gives a file its blocks up front", async () => {
  const libc = loadLibc();
  if (typeof libc === "string") throw new Error(`the suite runs with --allow-ffi: ${libc}`);
  const path = await Deno.makeTempFile();
  try {
    await Deno.truncate(path, 8 << 20);
    assert.ok(((await Deno.stat(path)).blocks ?? 0) * 512 < 1 << 20, "sparse before");
    assert.equal(reserveSpace(libc, path, 8 << 20), undefined);
    assert.ok(((await Deno.stat(path)).blocks ?? 0) * 512 >= 8 << 20, "allocated after");
    assert.equal((await Deno.stat(path)).size, 8 << 20, "size unchanged");
    assert.match(reserveSpace(libc, "/no/such/file", 1) ?? "", /No such file/);
    // a symlink swapped in for the .part is refused, its target never extended
    const target = await Deno.makeTempFile();
    const link = `${path}.link`;
    await Deno.symlink(target, link);
    assert.match(reserveSpace(libc, link, 8 << 20) ?? "", /symbolic links/);
    assert.equal((await Deno.stat(target)).size, 0);
    await Deno.remove(link);
    await Deno.remove(target);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("ioMessage: the system's words without the runtime's decoration", () => {
  const e = new Error("No space left on device (os error 28): write '/x'\nstack");
  assert.equal(ioMessage(e), "No space left on device");
  assert.equal(ioMessage("plain"), "plain");
});
