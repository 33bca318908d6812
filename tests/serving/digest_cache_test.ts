import assert from "node:assert/strict";
import {
  decodeEntry,
  defaultCacheDir,
  DIGEST_CACHE_SUBDIR,
  DigestCache,
  encodeEntry,
  entryName,
  type FileVersion,
} from "../../lib/serving/digest_cache.ts";
import { digestFile, sha256 } from "../../lib/io/file_digest.ts";
import { seededBytes, tempDir } from "../harness.ts";

const PIECE = 1 << 16;

async function versionOf(path: string): Promise<FileVersion> {
  const info = await Deno.stat(path);
  return {
    realPath: await Deno.realPath(path),
    size: info.size,
    mtimeMs: info.mtime!.getTime(),
    ino: info.ino,
  };
}

async function digestOf(path: string) {
  using f = await Deno.open(path);
  return await digestFile(f, (await Deno.stat(path)).size, PIECE);
}

Deno.test("defaultCacheDir: XDG_CACHE_HOME, else HOME/.cache, else none", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];
  assert.equal(defaultCacheDir(env({ XDG_CACHE_HOME: "/x", HOME: "/h" })), "/x/udpget");
  assert.equal(defaultCacheDir(env({ HOME: "/h" })), "/h/.cache/udpget");
  assert.equal(
    defaultCacheDir(env({ XDG_CACHE_HOME: "relative", HOME: "/h" })),
    "/h/.cache/udpget",
    "a relative XDG_CACHE_HOME is invalid (XDG spec) and ignored",
  );
  assert.equal(defaultCacheDir(env({})), undefined);
  assert.throws(() =>
    defaultCacheDir(() => {
      throw new Deno.errors.NotCapable("no env");
    })
  );
});

Deno.test("entryName: depends on the path and the piece size", () => {
  assert.match(entryName("/srv/a", PIECE), /^[0-9a-f]{64}\.json$/);
  assert.notEqual(entryName("/srv/a", PIECE), entryName("/srv/b", PIECE));
  assert.notEqual(entryName("/srv/a", PIECE), entryName("/srv/a", PIECE * 2));
});

Deno.test("decodeEntry: only for exactly the version and piece size it was made from", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir.path}/f`;
    await Deno.writeFile(path, seededBytes(200_000, 1));
    const v = await versionOf(path);
    const d = await digestOf(path);
    const quick = new Uint8Array(32).fill(7);
    const text = encodeEntry(v, d, quick);
    const back = decodeEntry(text, v, PIECE);
    assert.ok(back);
    assert.deepEqual(back.digest, d);
    assert.deepEqual(back.quick, quick);
    for (
      const other of [
        { ...v, size: v.size + 1 },
        { ...v, mtimeMs: v.mtimeMs + 1 },
        { ...v, ino: (v.ino ?? 0) + 1 },
        { ...v, realPath: v.realPath + "x" },
      ]
    ) {
      assert.equal(decodeEntry(text, other, PIECE), undefined, JSON.stringify(other));
    }
    assert.equal(decodeEntry(text, v, PIECE * 2), undefined, "another piece size");
  } finally {
    await dir.cleanup();
  }
});

Deno.test("decodeEntry: corrupt, truncated, foreign or inconsistent text is refused", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir.path}/f`;
    await Deno.writeFile(path, seededBytes(200_000, 2));
    const v = await versionOf(path);
    const d = await digestOf(path);
    const text = encodeEntry(v, d, sha256(new Uint8Array(1)));
    const o = JSON.parse(text);
    const bad = [
      "",
      "null",
      "[]",
      "{",
      text.slice(0, text.length / 2),
      JSON.stringify({ ...o, format: "something-else" }),
      JSON.stringify({ ...o, digest: "zz" + o.digest.slice(2) }),
      JSON.stringify({ ...o, digest: o.digest.slice(2) }),
      JSON.stringify({ ...o, quick: 5 }),
      // a piece hash changed: no longer hashes to the stored root
      JSON.stringify({ ...o, pieceHashes: "A" + o.pieceHashes.slice(1) }),
      // one piece too few
      JSON.stringify({ ...o, pieceHashes: btoa("x".repeat(32 * 3)) }),
    ];
    for (const t of bad) assert.equal(decodeEntry(t, v, PIECE), undefined, t.slice(0, 60));
  } finally {
    await dir.cleanup();
  }
});

Deno.test("DigestCache: save then load; a rewrite with the same size and mtime fails the quick check", async () => {
  const dir = await tempDir();
  try {
    const root = await Deno.realPath(await Deno.makeTempDir({ dir: dir.path }));
    const cache = await DigestCache.open(`${dir.path}/cache`, root);
    assert.ok(cache instanceof DigestCache);
    const path = `${root}/f`;
    await Deno.writeFile(path, seededBytes(300_000, 3));
    const v = await versionOf(path);
    const d = await digestOf(path);
    {
      using f = await Deno.open(path);
      await cache.save(v, d, f);
      assert.deepEqual(await cache.load(v, PIECE, f), d);
      assert.equal(await cache.load(v, PIECE * 2, f), undefined, "not for another piece size");
    }
    const names = [...Deno.readDirSync(`${dir.path}/cache/${DIGEST_CACHE_SUBDIR}`)].map((e) =>
      e.name
    );
    assert.deepEqual(names, [entryName(v.realPath, PIECE)], "no temp file left behind");
    assert.equal(Deno.statSync(`${dir.path}/cache/${DIGEST_CACHE_SUBDIR}`).mode! & 0o777, 0o700);
    // rewrite the first byte in place, then restore size and mtime (as `touch -r` would)
    const bytes = Deno.readFileSync(path);
    bytes[0] ^= 1;
    Deno.writeFileSync(path, bytes);
    Deno.utimeSync(path, new Date(v.mtimeMs), new Date(v.mtimeMs));
    const same = await versionOf(path);
    assert.deepEqual(same, v, "the key alone cannot tell");
    using f = await Deno.open(path);
    assert.equal(await cache.load(v, PIECE, f), undefined, "the quick check does");
  } finally {
    await dir.cleanup();
  }
});

Deno.test("DigestCache: never inside the served root", async () => {
  const dir = await tempDir();
  try {
    const root = await Deno.realPath(dir.path);
    const inside = await DigestCache.open(`${root}/sub/cache`, root);
    assert.equal(typeof inside, "string");
    assert.match(inside as string, /inside the served root/);
    assert.equal(typeof (await DigestCache.open(root, root)), "string");
  } finally {
    await dir.cleanup();
  }
});

Deno.test("DigestCache: a cache directory that cannot be created says why", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir.path}/file`, "x");
    const r = await DigestCache.open(`${dir.path}/file/cache`, "/nonexistent-root");
    assert.equal(typeof r, "string");
  } finally {
    await dir.cleanup();
  }
});
