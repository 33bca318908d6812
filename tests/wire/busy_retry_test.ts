import assert from "node:assert/strict";
import { formatBusyRetry, MAX_BUSY_RETRY_MS, parseBusyRetry } from "../../lib/wire/busy_retry.ts";

Deno.test("busy retry: the message carries whole milliseconds, read back the same", () => {
  assert.equal(formatBusyRetry(12.2), "busy; retry in 13 ms");
  assert.equal(parseBusyRetry(formatBusyRetry(12.2)), 13);
  assert.equal(parseBusyRetry(formatBusyRetry(0)), 1, "never 0: 'now' would only bounce again");
  for (let ms = 1; ms < 5000; ms += 97) assert.equal(parseBusyRetry(formatBusyRetry(ms)), ms);
});

Deno.test("busy retry: capped, and any other message is a plain BUSY", () => {
  assert.equal(parseBusyRetry(formatBusyRetry(1e9)), MAX_BUSY_RETRY_MS);
  assert.equal(parseBusyRetry("busy; retry in 999999999 ms"), MAX_BUSY_RETRY_MS);
  assert.equal(parseBusyRetry("busy; retry in 40 ms (queue full)"), 40, "text may follow");
  for (
    const m of [
      "hashing 5/10",
      "",
      "busy; retry in 0 ms",
      "busy; retry in -3 ms",
      "x busy; retry in 4 ms",
      "busy; retry in 12ms",
      "busy; retry in 1234567890 ms",
    ]
  ) {
    assert.equal(parseBusyRetry(m), undefined, m);
  }
});
