import assert from "node:assert/strict";
import { FileTable, MAX_NAMES } from "../../lib/serving/file_table.ts";
import { tempDir } from "../harness.ts";

Deno.test("FileTable: the names it remembers are bounded (LRU), whatever clients ask", async () => {
  const dir = await tempDir();
  const table = new FileTable(await Deno.realPath(dir.path), 1 << 16);
  try {
    const n = MAX_NAMES + 200;
    for (let i = 0; i < n; i++) await Deno.writeTextFile(`${dir.path}/f${i}`, String(i));
    for (let i = 0; i < n; i++) {
      const f = await table.open(`f${i}`);
      assert.ok(!("code" in f), `f${i} opens`);
    }
    assert.equal(table.namesCached, MAX_NAMES);
    const again = await table.open("f0"); // evicted, resolved again
    assert.ok(!("code" in again));
    assert.equal(table.namesCached, MAX_NAMES);
  } finally {
    table.close();
    await dir.cleanup();
  }
});
