/**
 * The checked-in lock file must list the Deno binary of every platform the `deno` package
 * supports: npm installs optional platform packages from the lock file alone, so a stale lock
 * leaves a macOS or Windows user with no Deno at all.
 */

import assert from "node:assert/strict";

interface LockPackage {
  version?: string;
  optionalDependencies?: Record<string, string>;
}

Deno.test("package-lock.json lists every platform's @deno binary at the pinned version", async () => {
  const root = new URL("../../", import.meta.url);
  const pkg = JSON.parse(await Deno.readTextFile(new URL("package.json", root)));
  const lock = JSON.parse(await Deno.readTextFile(new URL("package-lock.json", root))) as {
    packages: Record<string, LockPackage>;
  };
  const deno = lock.packages["node_modules/deno"];
  assert.equal(deno?.version, pkg.dependencies.deno, "the lock pins the Deno of package.json");
  const platforms = Object.entries(deno.optionalDependencies ?? {});
  assert.ok(platforms.length >= 6, `platform packages listed: ${platforms.length}`);
  for (const [name, version] of platforms) {
    const entry = lock.packages[`node_modules/${name}`];
    assert.ok(entry, `${name} is in package-lock.json`);
    assert.equal(entry.version, version, `${name} at ${version}`);
  }
});
