import assert from "node:assert/strict";
import { FileTable, MAX_NAMES, PREHASH_LOG_MIN_BYTES } from "../../lib/serving/file_table.ts";
import { seededBytes, tempDir } from "../harness.ts";
import { DigestCache, entryName } from "../../lib/serving/digest_cache.ts";
import { digestFile, type DigestFn } from "../../lib/io/file_digest.ts";
import { parseBusyProgress } from "../../lib/wire/busy_progress.ts";
import type { LogEvent } from "../../lib/serving/log_event.ts";

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

// ---------------------------------------------------------------------------------------------
// digests: jobs, progress, background pass, persistent cache
// ---------------------------------------------------------------------------------------------

/** A digest function that counts its calls and can be held before it starts reading. */
function countingDigest(hold?: Promise<void>, progressAt?: number) {
  const calls: number[] = [];
  let started!: () => void;
  const onStart = new Promise<void>((r) => started = r);
  let active = 0;
  let maxActive = 0;
  const fn: DigestFn = async (file, size, pieceSize, onProgress) => {
    calls.push(size);
    active++;
    maxActive = Math.max(maxActive, active);
    try {
      if (progressAt !== undefined) onProgress?.(progressAt);
      started();
      if (hold) await hold;
      return await digestFile(file, size, pieceSize, onProgress);
    } finally {
      active--;
    }
  };
  return { fn, calls, onStart, maxActive: () => maxActive };
}

async function withRoot(
  body: (root: string, cacheDir: string) => Promise<void>,
): Promise<void> {
  const dir = await tempDir();
  try {
    const root = `${await Deno.realPath(dir.path)}/root`;
    await Deno.mkdir(root);
    await body(root, `${dir.path}/cache`);
  } finally {
    await dir.cleanup();
  }
}

async function openCache(cacheDir: string, root: string): Promise<DigestCache> {
  const c = await DigestCache.open(cacheDir, root);
  assert.ok(c instanceof DigestCache, String(c));
  return c;
}

async function digestOfName(table: FileTable, name: string) {
  const f = await table.open(name, true);
  assert.ok(!("code" in f), `${name} opens`);
  const d = await table.digest(f, 10_000);
  assert.ok(d, `${name} hashed`);
  return { f, d };
}

Deno.test("FileTable: while hashing, the BUSY message says how far it got", async () => {
  await withRoot(async (root) => {
    await Deno.writeFile(`${root}/big`, seededBytes(300_000, 1));
    let release!: () => void;
    const hold = new Promise<void>((r) => release = r);
    const digest = countingDigest(hold, 12_345);
    const table = new FileTable(root, 1 << 16, { digestFn: digest.fn });
    try {
      const f = await table.open("big", true);
      assert.ok(!("code" in f));
      assert.equal(await table.digest(f, 0), undefined, "not ready");
      await digest.onStart;
      assert.equal(table.busyMessage(f), "hashing 12345/300000");
      assert.deepEqual(parseBusyProgress(table.busyMessage(f)), { done: 12_345, total: 300_000 });
      release();
      assert.ok(await table.digest(f, 10_000));
      assert.equal(table.busyMessage(f), "hashing 300000/300000");
      assert.ok(f.fileId !== undefined);
    } finally {
      release();
      table.close();
      await table.drain();
    }
  });
});

Deno.test("FileTable: the digest cache is used after a restart; no file is hashed twice", async () => {
  await withRoot(async (root, cacheDir) => {
    await Deno.writeFile(`${root}/a`, seededBytes(200_000, 2));
    await Deno.writeFile(`${root}/b`, seededBytes(70_000, 3));
    const events: LogEvent[] = [];
    const first = countingDigest();
    const t1 = new FileTable(root, 1 << 16, {
      digestFn: first.fn,
      cache: await openCache(cacheDir, root),
      log: (e) => events.push(e),
    });
    const before = await digestOfName(t1, "a");
    const summary1 = await t1.prehash(["a", "b"]);
    assert.deepEqual(first.calls.sort((x, y) => x - y), [70_000, 200_000], "each hashed once");
    assert.equal(summary1.hashed, 1, "a was hashed already, on request");
    t1.close();
    await t1.drain();
    // on request every file gets its lines; in the startup pass only big ones (b is small)
    assert.deepEqual(events.map((e) => [e.event, e.fields?.name]), [["hashing", "a"], [
      "hashed",
      "a",
    ]]);

    // "restart": a new table over the same cache
    const second = countingDigest();
    const logged: LogEvent[] = [];
    const t2 = new FileTable(root, 1 << 16, {
      digestFn: second.fn,
      cache: await openCache(cacheDir, root),
      log: (e) => logged.push(e),
    });
    try {
      const summary = await t2.prehash(["a", "b"]);
      assert.equal(summary.fromCache, 2);
      assert.equal(summary.hashed, 0);
      const after = await digestOfName(t2, "a");
      assert.deepEqual(after.d, before.d);
      assert.equal(after.f.fileId, before.f.fileId);
      assert.deepEqual(second.calls, [], "nothing hashed again");
      assert.ok(logged.some((e) => e.event === "cache_loaded" && e.fields?.files === 2));
    } finally {
      t2.close();
      await t2.drain();
    }

    // on request (not through the startup pass) a cache hit is logged per file
    const third = countingDigest();
    const events3: LogEvent[] = [];
    const t3 = new FileTable(root, 1 << 16, {
      digestFn: third.fn,
      cache: await openCache(cacheDir, root),
      log: (e) => events3.push(e),
    });
    try {
      await digestOfName(t3, "b");
      assert.deepEqual(third.calls, []);
      assert.deepEqual(events3.map((e) => e.msg), ['digest of "b" loaded from cache']);
    } finally {
      t3.close();
      await t3.drain();
    }
  });
});

Deno.test("FileTable: a file changed since it was cached (size or mtime) is hashed again", async () => {
  await withRoot(async (root, cacheDir) => {
    await Deno.writeFile(`${root}/a`, seededBytes(100_000, 4));
    await Deno.writeFile(`${root}/b`, seededBytes(100_000, 5));
    const t1 = new FileTable(root, 1 << 16, { cache: await openCache(cacheDir, root) });
    const old = await digestOfName(t1, "a");
    await digestOfName(t1, "b");
    t1.close();
    await t1.drain();
    // a: new size; b: same size, other bytes, another mtime
    await Deno.writeFile(`${root}/a`, seededBytes(100_001, 4));
    const bInfo = await Deno.stat(`${root}/b`);
    await Deno.writeFile(`${root}/b`, seededBytes(100_000, 6));
    const later = new Date(bInfo.mtime!.getTime() + 5000);
    await Deno.utime(`${root}/b`, later, later);

    const digest = countingDigest();
    const t2 = new FileTable(root, 1 << 16, {
      digestFn: digest.fn,
      cache: await openCache(cacheDir, root),
    });
    try {
      const s = await t2.prehash(["a", "b"]);
      assert.deepEqual({ fromCache: s.fromCache, hashed: s.hashed }, { fromCache: 0, hashed: 2 });
      assert.deepEqual(digest.calls.sort((x, y) => x - y), [100_000, 100_001]);
      const now = await digestOfName(t2, "a");
      assert.notEqual(now.f.fileId, old.f.fileId);
      assert.equal(now.d.size, 100_001);
    } finally {
      t2.close();
      await t2.drain();
    }
  });
});

Deno.test("FileTable: a corrupt cache entry is ignored, and replaced by a good one", async () => {
  await withRoot(async (root, cacheDir) => {
    await Deno.writeFile(`${root}/a`, seededBytes(150_000, 7));
    const cache = await openCache(cacheDir, root);
    const t1 = new FileTable(root, 1 << 16, { cache });
    const good = await digestOfName(t1, "a");
    t1.close();
    await t1.drain();
    const entry = `${cache.dir}/${entryName(`${root}/a`, 1 << 16)}`;
    const text = await Deno.readTextFile(entry);
    await Deno.writeTextFile(entry, text.slice(0, 100) + "garbage" + text.slice(107));

    const digest = countingDigest();
    const t2 = new FileTable(root, 1 << 16, { digestFn: digest.fn, cache });
    try {
      const s = await t2.prehash(["a"]);
      assert.deepEqual({ fromCache: s.fromCache, hashed: s.hashed }, { fromCache: 0, hashed: 1 });
      assert.deepEqual((await digestOfName(t2, "a")).d, good.d);
      assert.equal(await Deno.readTextFile(entry), text, "rewritten as it was");
    } finally {
      t2.close();
      await t2.drain();
    }
  });
});

Deno.test("FileTable: the background pass hashes one file at a time, and skips what is not servable", async () => {
  await withRoot(async (root) => {
    for (let i = 0; i < 5; i++) await Deno.writeFile(`${root}/f${i}`, seededBytes(50_000 + i, i));
    await Deno.mkdir(`${root}/dir`);
    const digest = countingDigest();
    const table = new FileTable(root, 1 << 16, { digestFn: digest.fn });
    try {
      const s = await table.prehash(["f0", "f1", "f2", "f3", "f4", "dir", "missing", "../x"]);
      assert.deepEqual(
        { files: s.files, hashed: s.hashed, failed: s.failed },
        { files: 8, hashed: 5, failed: 3 },
      );
      assert.equal(digest.maxActive(), 1);
      // a request after the pass finds the digest ready, without hashing again
      const f = await table.open("f3", true);
      assert.ok(!("code" in f));
      assert.ok(f.fileId !== undefined, "known as soon as it is opened");
      assert.ok(await table.digest(f, 0));
      assert.equal(digest.calls.length, 5);
    } finally {
      table.close();
      await table.drain();
    }
  });
});

Deno.test("FileTable: a request during the background pass shares its job", async () => {
  await withRoot(async (root) => {
    await Deno.writeFile(`${root}/a`, seededBytes(100_000, 9));
    let release!: () => void;
    const hold = new Promise<void>((r) => release = r);
    const digest = countingDigest(hold, 1);
    const table = new FileTable(root, 1 << 16, { digestFn: digest.fn });
    try {
      const pass = table.prehash(["a"]);
      await digest.onStart;
      const f = await table.open("a", true);
      assert.ok(!("code" in f));
      assert.equal(await table.digest(f, 0), undefined);
      assert.equal(table.busyMessage(f), "hashing 1/100000");
      release();
      assert.ok(await table.digest(f, 10_000));
      assert.equal((await pass).hashed, 1);
      assert.equal(digest.calls.length, 1);
    } finally {
      release();
      table.close();
      await table.drain();
    }
  });
});

Deno.test("FileTable: the startup pass logs its own lines only for big files", async () => {
  await withRoot(async (root) => {
    await Deno.writeFile(`${root}/small`, seededBytes(1000, 10));
    // sparse: PREHASH_LOG_MIN_BYTES of zeros without writing them
    using big = await Deno.open(`${root}/big`, { write: true, create: true });
    await big.truncate(PREHASH_LOG_MIN_BYTES);
    const events: LogEvent[] = [];
    const table = new FileTable(root, 1 << 20, { log: (e) => events.push(e) });
    try {
      assert.equal((await table.prehash(["big", "small"])).hashed, 2);
      assert.deepEqual(events.map((e) => [e.event, e.fields?.name]), [
        ["hashing", "big"],
        ["hashed", "big"],
      ]);
    } finally {
      table.close();
      await table.drain();
    }
  });
});

Deno.test("prehash: files a request started first are counted as such; a stop says so", async () => {
  await withRoot(async (root) => {
    for (const n of ["a", "b", "c"]) await Deno.writeFile(`${root}/${n}`, seededBytes(50_000, 9));
    const t = new FileTable(root, 1 << 16, { digestFn: countingDigest().fn });
    try {
      await digestOfName(t, "a"); // a request got there first
      const s = await t.prehash(["a", "b", "c"]);
      assert.deepEqual(
        { hashed: s.hashed, onRequest: s.onRequest, stopped: s.stopped },
        { hashed: 2, onRequest: 1, stopped: false },
        "every file accounted for once",
      );
      const stop = new AbortController();
      stop.abort();
      const halted = await t.prehash(["a", "b", "c"], stop.signal);
      assert.equal(halted.stopped, true);
      assert.equal(halted.fromCache + halted.hashed + halted.onRequest, 0, "nothing reached");
    } finally {
      t.close();
    }
  });
});
