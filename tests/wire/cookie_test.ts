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

Deno.test("cookie: remembered tokens change nothing — many addresses, periods, and a caller's copy", () => {
  const jar = new CookieJar(new Uint8Array(32).fill(7));
  const fresh = () => new CookieJar(new Uint8Array(32).fill(7)); // (remembers nothing yet)
  // more addresses than it remembers, twice over: each token is the one a fresh jar issues
  const tokens = new Map<string, Uint8Array>();
  for (let i = 0; i < 3000; i++) {
    const ip = `10.${i >> 8}.${i & 255}.1`;
    tokens.set(ip, jar.issue(ip, 5 * COOKIE_PERIOD_MS));
  }
  for (const [ip, t] of tokens) {
    assert.deepEqual(t, fresh().issue(ip, 5 * COOKIE_PERIOD_MS));
    assert.ok(jar.valid(t, ip, 6 * COOKIE_PERIOD_MS), "valid in the next period");
    assert.ok(!jar.valid(t, ip, 7 * COOKIE_PERIOD_MS), "not after");
    assert.ok(!jar.valid(t, "10.255.255.254", 5 * COOKIE_PERIOD_MS), "not for another address");
  }
  // an issued token is the caller's: changing it changes nothing the jar remembers
  const t = jar.issue("192.0.2.1", 0);
  t.fill(0);
  assert.ok(jar.valid(jar.issue("192.0.2.1", 0), "192.0.2.1", 0));
  assert.ok(!jar.valid(t, "192.0.2.1", 0));
});
