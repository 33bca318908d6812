import assert from "node:assert/strict";
import {
  describeSuppressed,
  RefusalLimiter,
  type Suppressed,
} from "../../lib/serving/refusal_limiter.ts";

const LIMITS = { burst: 3, intervalMs: 10_000, maxAddresses: 4 };

Deno.test("RefusalLimiter: the first `burst` refusals of a class are logged, the rest counted", () => {
  const l = new RefusalLimiter(LIMITS);
  const logged = [];
  for (let i = 0; i < 10; i++) logged.push(l.admit("not_found", `10.0.0.${i % 2}`, 1000 + i).log);
  assert.deepEqual(logged, [true, true, true, false, false, false, false, false, false, false]);
  assert.deepEqual(l.tick(10_999), [], "the interval has not run its length yet");
  const s = l.tick(11_000);
  assert.deepEqual(s, [{
    cls: "not_found",
    count: 7,
    addresses: 2,
    addressesCapped: false,
    periodMs: 10_000,
  }]);
  assert.equal(
    describeSuppressed(s[0]),
    "7 more not_found refusals from 2 addresses suppressed in the last 10 s",
  );
  assert.deepEqual(l.tick(50_000), [], "summarised once");
  assert.equal(l.admit("not_found", "10.0.0.1", 50_001).log, true, "a new interval logs again");
});

Deno.test("RefusalLimiter: classes are limited independently", () => {
  const l = new RefusalLimiter(LIMITS);
  for (let i = 0; i < 3; i++) l.admit("auth_failed", "a", i);
  assert.equal(l.admit("auth_failed", "a", 5).log, false);
  assert.equal(l.admit("malformed", "a", 5).log, true);
  const s = l.flush(6);
  assert.deepEqual(s.map((x) => [x.cls, x.count]), [["auth_failed", 1]]);
  assert.equal(s[0].periodMs, 6);
});

Deno.test("RefusalLimiter: no summary when nothing was suppressed", () => {
  const l = new RefusalLimiter(LIMITS);
  l.admit("busy", "a", 0);
  l.admit("busy", "a", 1);
  assert.deepEqual(l.tick(20_000), []);
  assert.deepEqual(l.flush(20_000), []);
});

Deno.test("RefusalLimiter: a refusal after the interval closes it and returns its summary", () => {
  const l = new RefusalLimiter(LIMITS);
  for (let i = 0; i < 5; i++) l.admit("stale", "a", i);
  const r = l.admit("stale", "b", 10_000);
  assert.equal(r.log, true);
  assert.equal(r.summary?.count, 2);
  assert.deepEqual(l.tick(10_001), [], "already reported");
});

Deno.test("RefusalLimiter: a flood from many addresses keeps bounded state and says 'more than'", () => {
  const l = new RefusalLimiter(LIMITS);
  for (let i = 0; i < 100_000; i++) l.admit("malformed", `198.51.100.${i}`, 0);
  const [s]: Suppressed[] = l.flush(2000);
  assert.equal(s.count, 100_000 - 3);
  assert.equal(s.addresses, 4);
  assert.equal(s.addressesCapped, true);
  assert.equal(
    describeSuppressed(s),
    "99997 more malformed refusals from more than 4 addresses suppressed in the last 2 s",
  );
});

Deno.test("describeSuppressed: singulars", () => {
  assert.equal(
    describeSuppressed({
      cls: "busy",
      count: 1,
      addresses: 1,
      addressesCapped: false,
      periodMs: 300,
    }),
    "1 more busy refusal from 1 address suppressed in the last 1 s",
  );
});
