import assert from "node:assert/strict";
import { listRoot } from "../../lib/serving/root_walk.ts";
import { tempDir } from "../harness.ts";

Deno.test("listRoot: files in every directory, sorted; not what no client may ask for", async () => {
  const dir = await tempDir();
  try {
    const root = await Deno.realPath(dir.path);
    await Deno.mkdir(`${root}/sub/deeper`, { recursive: true });
    await Deno.writeTextFile(`${root}/b`, "b");
    await Deno.writeTextFile(`${root}/a`, "a");
    await Deno.writeTextFile(`${root}/sub/c`, "c");
    await Deno.writeTextFile(`${root}/sub/deeper/d`, "d");
    await Deno.writeTextFile(`${root}/back\\slash`, "x");
    assert.deepEqual(await listRoot(root), {
      names: ["a", "b", "sub/c", "sub/deeper/d"],
      truncated: false,
    });
  } finally {
    await dir.cleanup();
  }
});

Deno.test("listRoot: symlinked directories are not entered; symlinked files are listed", async () => {
  const dir = await tempDir();
  try {
    const root = `${await Deno.realPath(dir.path)}/root`;
    const outside = `${await Deno.realPath(dir.path)}/outside`;
    await Deno.mkdir(root);
    await Deno.mkdir(outside);
    await Deno.writeTextFile(`${outside}/secret`, "s");
    await Deno.writeTextFile(`${root}/f`, "f");
    await Deno.symlink(outside, `${root}/out`); // out of the root
    await Deno.symlink(root, `${root}/loop`); // back into it
    await Deno.symlink(`${outside}/secret`, `${root}/link`); // listed; resolveInRoot refuses it
    assert.deepEqual((await listRoot(root)).names, ["f", "link"]);
  } finally {
    await dir.cleanup();
  }
});

Deno.test("listRoot: stops at maxFiles and says so; an unreadable root lists nothing", async () => {
  const dir = await tempDir();
  try {
    const root = await Deno.realPath(dir.path);
    for (let i = 0; i < 20; i++) {
      await Deno.writeTextFile(`${root}/f${String(i).padStart(2, "0")}`, "");
    }
    const r = await listRoot(root, 5);
    assert.deepEqual(r, { names: ["f00", "f01", "f02", "f03", "f04"], truncated: true });
    assert.deepEqual(await listRoot(`${root}/missing`), { names: [], truncated: false });
  } finally {
    await dir.cleanup();
  }
});

Deno.test("listRoot: an aborted walk stops at once", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir.path}/f`, "");
    const abort = new AbortController();
    abort.abort();
    assert.deepEqual(await listRoot(await Deno.realPath(dir.path), 10, abort.signal), {
      names: [],
      truncated: true,
    });
  } finally {
    await dir.cleanup();
  }
});
