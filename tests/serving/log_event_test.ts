import assert from "node:assert/strict";
import { formatLogLine, lineSink, type LogEvent } from "../../lib/serving/log_event.ts";

const TS = new Date("2026-01-02T03:04:05.678Z");
const EVENT: LogEvent = {
  level: "info",
  event: "transfer_end",
  msg: 'transfer 1 end: "a\\nb" to 10.0.0.1',
  fields: { transfer: 1, name: "a\nb", bytes: 10, ok: true, size: null },
};

Deno.test("formatLogLine: text is the ISO timestamp and the message; warnings say so", () => {
  assert.equal(
    formatLogLine("text", TS, EVENT),
    '2026-01-02T03:04:05.678Z transfer 1 end: "a\\nb" to 10.0.0.1',
  );
  assert.equal(
    formatLogLine("text", TS, { level: "warn", event: "cache", msg: "no cache" }),
    "2026-01-02T03:04:05.678Z warn: no cache",
  );
});

Deno.test("formatLogLine: json is one object per line with ts, level, event, msg and fields", () => {
  const line = formatLogLine("json", TS, EVENT);
  assert.ok(!line.includes("\n"), "a newline in a field cannot split the line");
  assert.deepEqual(JSON.parse(line), {
    ts: "2026-01-02T03:04:05.678Z",
    level: "info",
    event: "transfer_end",
    msg: 'transfer 1 end: "a\\nb" to 10.0.0.1',
    fields: { transfer: 1, name: "a\nb", bytes: 10, ok: true, size: null },
  });
  assert.deepEqual(
    JSON.parse(formatLogLine("json", TS, { ...EVENT, fields: undefined })).fields,
    {},
  );
});

Deno.test("lineSink: stamps each event with the injected clock", () => {
  const lines: string[] = [];
  const sink = lineSink("text", (l) => lines.push(l), () => TS);
  sink({ level: "info", event: "x", msg: "hello" });
  assert.deepEqual(lines, ["2026-01-02T03:04:05.678Z hello"]);
});
