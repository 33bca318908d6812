import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRate, TokenBucket } from "../../lib/engine/token_bucket.ts";

// ---------------------------------------------------------------------------------------------
// parseRate
// ---------------------------------------------------------------------------------------------

Deno.test("parseRate: plain bytes per second", () => {
  assert.equal(parseRate("1234"), 1234);
  assert.equal(parseRate("1"), 1);
  assert.equal(parseRate("100b"), 100);
  assert.equal(parseRate("100/s"), 100);
  assert.equal(parseRate("100B/s"), 100);
});

Deno.test("parseRate: decimal multipliers k, M, G", () => {
  assert.equal(parseRate("500k"), 500_000);
  assert.equal(parseRate("20M"), 20_000_000);
  assert.equal(parseRate("1G"), 1_000_000_000);
  assert.equal(parseRate("1.5M"), 1_500_000);
  assert.equal(parseRate("0.5k"), 500);
  assert.equal(parseRate("20MB/s"), 20_000_000);
  assert.equal(parseRate("20MB"), 20_000_000);
  assert.equal(parseRate("20M/s"), 20_000_000);
});

Deno.test("parseRate: binary multipliers Ki, Mi, Gi", () => {
  assert.equal(parseRate("4Ki"), 4096);
  assert.equal(parseRate("4Mi"), 4 * 1024 * 1024);
  assert.equal(parseRate("2Gi"), 2 * 1024 ** 3);
  assert.equal(parseRate("1.5Mi"), 1.5 * 1024 * 1024);
  assert.equal(parseRate("4MiB/s"), 4 * 1024 * 1024);
});

Deno.test("parseRate: case-insensitive, surrounding and inner spaces allowed", () => {
  assert.equal(parseRate("500K"), 500_000);
  assert.equal(parseRate("20m"), 20_000_000);
  assert.equal(parseRate("1g"), 1_000_000_000);
  assert.equal(parseRate("4mi"), 4 * 1024 * 1024);
  assert.equal(parseRate("4MI"), 4 * 1024 * 1024);
  assert.equal(parseRate("20mb/S"), 20_000_000);
  assert.equal(parseRate(" 20M "), 20_000_000);
  assert.equal(parseRate("20 M"), 20_000_000);
});

Deno.test("parseRate: rejects what is not a positive rate", () => {
  for (
    const bad of [
      "",
      " ",
      "fast",
      "0",
      "0k",
      "0.0001",
      "-5",
      "+5",
      "5X",
      "5Mx",
      "1e6",
      "M",
      "k5",
      ".5M",
      "5.M",
      "1.2.3",
      "5 5",
      "Infinity",
      "NaN",
      "0x10",
      "20MB/sec",
      "99999999999999999999",
    ]
  ) {
    assert.equal(parseRate(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("parseRate: results are positive safe integers", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.constantFrom("", "k", "K", "m", "M", "Mi", "ki", "G", "gi"),
      fc.constantFrom("", "b", "B/s", "/s"),
      (n, unit, suffix) => {
        const v = parseRate(`${n}${unit}${suffix}`);
        assert.ok(v !== undefined && Number.isSafeInteger(v) && v > 0);
        const mult: Record<string, number> = {
          "": 1,
          k: 1e3,
          ki: 1024,
          m: 1e6,
          mi: 1 << 20,
          g: 1e9,
          gi: 1 << 30,
        };
        assert.equal(v, n * mult[unit.toLowerCase()]);
      },
    ),
    { seed: 7, numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------------------------
// TokenBucket
// ---------------------------------------------------------------------------------------------

Deno.test("a full bucket sends a whole burst without waiting", () => {
  const b = new TokenBucket(1000, 5000, 0);
  for (let i = 0; i < 5; i++) assert.equal(b.take(1000, 0), 0);
  // one more byte at the same instant: 1 ms at 1000 B/s
  assert.equal(b.take(1, 0), 1);

  const c = new TokenBucket(1000, 5000, 0);
  assert.equal(c.take(5000, 0), 0);
  assert.equal(c.take(1000, 0), 1000);
});

Deno.test("beyond the burst, take returns the exact wait, and the debt is carried", () => {
  const b = new TokenBucket(1_000_000, 10_000, 0); // 1000 bytes per ms
  assert.equal(b.take(10_000, 0), 0);
  assert.equal(b.take(1000, 0), 1);
  assert.equal(b.take(1000, 0), 2); // debt 2000 bytes
  assert.equal(b.take(1000, 0), 3);
  // 1 ms later: 1000 bytes refilled, debt 2000 + 1000 new
  assert.equal(b.take(1000, 1), 3);
  // the caller waited: at 4 ms the debt is paid, the next takes its own time
  assert.equal(b.take(1000, 4), 1);
});

Deno.test("a take larger than the burst waits for the excess", () => {
  const b = new TokenBucket(2000, 1000, 0);
  assert.equal(b.take(3000, 0), 1000); // 2000 bytes beyond the burst at 2000 B/s
});

Deno.test("tokens refill over time at the rate", () => {
  const b = new TokenBucket(1000, 5000, 0); // 1 byte per ms
  assert.equal(b.take(5000, 0), 0);
  // 2 s later: 2000 bytes refilled
  assert.equal(b.take(2000, 2000), 0);
  assert.equal(b.take(1, 2000), 1);
});

Deno.test("tokens never refill above the burst", () => {
  const b = new TokenBucket(1000, 5000, 0);
  assert.equal(b.take(5000, 0), 0);
  // idle for a very long time: still only a burst available
  assert.equal(b.take(5000, 1e9), 0);
  assert.equal(b.take(1000, 1e9), 1000);

  // an untouched bucket does not accumulate either
  const c = new TokenBucket(1000, 5000, 0);
  assert.equal(c.take(5000, 60_000), 0);
  assert.equal(c.take(500, 60_000), 500);
});

Deno.test("simulation: a sender that always waits the returned delay keeps to the rate", () => {
  const rate = 2_500_000; // bytes/s
  const burst = 64_000;
  const packet = 1400;
  const b = new TokenBucket(rate, burst, 0);
  let t = 0; // ms
  let sent = 0;
  const n = 100_000;
  for (let i = 0; i < n; i++) {
    t += b.take(packet, t);
    sent += packet;
  }
  const ideal = (sent / rate) * 1000;
  const oneBurst = (burst / rate) * 1000;
  assert.ok(Math.abs(t - ideal) <= oneBurst + 1e-6, `${t} vs ${ideal} ± ${oneBurst}`);
  // exactly: the first burst is free, the rest goes at the rate
  assert.ok(Math.abs(t - ((sent - burst) / rate) * 1000) < 1e-6, `${t}`);
});

Deno.test("property: a backlogged sender sends N bytes in (N − burst)/rate; no interval beats rate × time + burst", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1000, max: 100_000_000 }),
      fc.integer({ min: 1, max: 200_000 }),
      fc.array(fc.integer({ min: 1, max: 65_536 }), { minLength: 1, maxLength: 300 }),
      fc.array(fc.integer({ min: 0, max: 50 }), { maxLength: 300 }),
      (rate, burst, sizes, idles) => {
        // backlogged: takes exactly when the previous wait ends
        {
          const b = new TokenBucket(rate, burst, 0);
          let t = 0;
          let n = 0;
          for (const s of sizes) {
            const wait = b.take(s, t);
            assert.ok(wait >= 0);
            t += wait;
            n += s;
          }
          const expected = Math.max(0, ((n - burst) / rate) * 1000);
          assert.ok(Math.abs(t - expected) < 1e-6 * Math.max(1, expected), `${t} vs ${expected}`);
          assert.ok(Math.abs(t - (n / rate) * 1000) <= (burst / rate) * 1000 + 1e-6);
        }
        // with idle pauses: over any run of sends, bytes ≤ rate × elapsed + burst
        {
          const b = new TokenBucket(rate, burst, 0);
          const times: number[] = [];
          let t = 0;
          sizes.forEach((s, i) => {
            t += idles[i] ?? 0;
            t += b.take(s, t);
            times.push(t);
          });
          for (let i = 0; i < sizes.length; i++) {
            let bytes = 0;
            for (let j = i; j < sizes.length; j++) {
              bytes += sizes[j];
              // the bytes sent at times[i..j] minus the one send that may exceed the burst
              const allowed = (rate * (times[j] - times[i])) / 1000 + Math.max(burst, sizes[i]);
              assert.ok(bytes <= allowed + 1e-6 * allowed, `${bytes} > ${allowed}`);
            }
          }
        }
      },
    ),
    { seed: 99, numRuns: 200 },
  );
});

Deno.test("debtMs: what was taken beyond the tokens, in ms of the rate, paid off as time passes", () => {
  const b = new TokenBucket(1000, 100, 0); // 1000 bytes/s, 100 bytes of burst
  assert.equal(b.debtMs(0), 0);
  b.take(600, 0); // 500 bytes owed: half a second
  assert.equal(b.debtMs(0), 500);
  assert.equal(b.debtMs(200), 300);
  assert.equal(b.debtMs(600), 0, "paid off: no credit beyond the burst shows as debt");
  assert.equal(b.take(0, 200), 300, "debtMs changed nothing");
});

Deno.test("charge takes what was sent, but never into more than its debt bound", () => {
  const b = new TokenBucket(1_000_000, 10_000, 0); // 1000 bytes per ms
  b.charge(10_000, 0, 50); // the burst
  assert.equal(b.debtMs(0), 0);
  b.charge(30_000, 0, 50);
  assert.equal(b.debtMs(0), 30);
  b.charge(1_000_000, 0, 50); // a flood: held to the bound
  assert.equal(b.debtMs(0), 50);
  assert.equal(b.take(1000, 0), 51, "the data after it waits the bound, not the flood");
  b.charge(1_000_000, 0, 50); // more debt than the bound already (taken): none added
  assert.equal(b.debtMs(0), 51);
  assert.equal(b.debtMs(51), 0, "paid back at the rate");
});
