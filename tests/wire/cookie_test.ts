import assert from "node:assert/strict";
import { COOKIE_PERIOD_MS, CookieJar } from "../../lib/wire/cookie.ts";

const jar = new CookieJar(new Uint8Array(32).fill(9));

Deno.test("cookie: valid for its IP in its period and the next, not after", () => {
  const t = 10 * COOKIE_PERIOD_MS + 5;
  const token = jar.issue("192.0.2.7", t);
  assert.equal(token.length, 16);
  assert.ok(jar.valid(token, "192.0.2.7", t));
  assert.ok(jar.valid(token, "192.0.2.7", t + COOKIE_PERIOD_MS));
  assert.ok(!jar.valid(token, "192.0.2.7", t + 2 * COOKIE_PERIOD_MS));
  assert.ok(!jar.valid(token, "192.0.2.8", t), "bound to the address");
  assert.ok(!jar.valid(new Uint8Array(16), "192.0.2.7", t), "no token is not a token");
});

Deno.test("cookie: another secret's tokens are rejected", () => {
  const other = new CookieJar(new Uint8Array(32).fill(1));
  assert.ok(!jar.valid(other.issue("::1", 0), "::1", 0));
});
