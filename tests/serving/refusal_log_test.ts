import assert from "node:assert/strict";
import { refusalClass, RefusalLog } from "../../lib/serving/refusal_log.ts";
import { RequestGate } from "../../lib/serving/request_gate.ts";
import { CookieJar } from "../../lib/wire/cookie.ts";
import { RequestAuthenticator } from "../../lib/wire/auth.ts";
import { encode, ErrorCode, NO_TOKEN } from "../../lib/wire/packet.ts";
import type { LogEvent } from "../../lib/serving/log_event.ts";

const A: Deno.NetAddr = { transport: "udp", hostname: "10.0.0.1", port: 5000 };
const V6: Deno.NetAddr = { transport: "udp", hostname: "::1", port: 6000 };
const LIMITS = { burst: 2, intervalMs: 10_000, maxAddresses: 8 };

function newLog() {
  const events: LogEvent[] = [];
  return { log: new RefusalLog((e) => events.push(e), LIMITS), events };
}

Deno.test("refusalClass: one class per kind of refusal", () => {
  assert.equal(refusalClass(ErrorCode.NotFound), "not_found");
  assert.equal(refusalClass(ErrorCode.AccessDenied), "access_denied");
  assert.equal(refusalClass(ErrorCode.AuthFailed), "auth_failed");
  assert.equal(refusalClass(ErrorCode.BadRequest), "malformed");
  assert.equal(refusalClass(ErrorCode.BadVersion), "malformed");
  assert.equal(refusalClass(ErrorCode.Busy), "busy");
  assert.equal(refusalClass(ErrorCode.TooMany), "too_many");
  assert.equal(refusalClass(99), "other");
});

Deno.test("RefusalLog: a line per refused request, names quoted, internal errors at level error", () => {
  const { log, events } = newLog();
  log.request(
    V6,
    { type: "meta_request", name: 'we"ird\nname' },
    ErrorCode.NotFound,
    "no such file",
    0,
  );
  log.request(A, { type: "chunk_request", name: "f" }, ErrorCode.Internal, "EIO", 0);
  assert.equal(events.length, 2);
  assert.equal(
    events[0].msg,
    'refused META "we\\"ird\\nname" from [::1]:6000: NOT_FOUND "no such file"',
  );
  assert.deepEqual(events[0].fields, {
    class: "not_found",
    client: "::1",
    port: 6000,
    request: "META",
    name: 'we"ird\nname',
    code: "NOT_FOUND",
    message: "no such file",
  });
  assert.equal(events[1].level, "error");
  assert.equal(events[1].fields?.class, "internal");
});

Deno.test("RefusalLog: gate refusals; RETRY and served requests are not refusals", () => {
  const { log, events } = newLog();
  const gate = new RequestGate(new CookieJar(new Uint8Array(32)), undefined);
  const meta = encode({ type: "meta_request", requestId: 1, token: NO_TOKEN, name: "a" });
  log.gate(A, gate.admit(meta, A.hostname, 0), 0); // a RETRY
  const bad = meta.slice();
  bad[2] = 9;
  log.gate(A, gate.admit(bad, A.hostname, 0), 0);
  log.gate(A, gate.admit(new Uint8Array([1]), A.hostname, 0), 0);
  assert.deepEqual(events.map((e) => [e.fields?.class, e.fields?.code]), [
    ["malformed", "BAD_VERSION"],
    ["malformed", "dropped"],
  ]);
  const authGate = new RequestGate(
    new CookieJar(new Uint8Array(32)),
    new RequestAuthenticator(new Uint8Array(32).fill(3)),
  );
  log.gate(A, authGate.admit(meta, A.hostname, 0), 0);
  assert.equal(events[2].fields?.class, "auth_failed");
  assert.equal(events[2].fields?.code, "AUTH_FAILED");
});

Deno.test("RefusalLog: per class, `burst` lines per interval, then one summary", () => {
  const { log, events } = newLog();
  for (let i = 0; i < 10; i++) {
    const addr = { ...A, hostname: `10.0.0.${i % 3}` };
    log.request(addr, { type: "meta_request", name: `m${i}` }, ErrorCode.NotFound, "no", i);
  }
  log.request(A, { type: "meta_request", name: "x" }, ErrorCode.AccessDenied, "'..' in path", 20);
  assert.deepEqual(events.map((e) => e.fields?.name), ["m0", "m1", "x"]);
  log.tick(9_999);
  assert.equal(events.length, 3);
  log.tick(10_000);
  assert.equal(events.length, 4);
  assert.equal(events[3].event, "refusals_suppressed");
  assert.equal(
    events[3].msg,
    "8 more not_found refusals from 3 addresses suppressed in the last 10 s",
  );
  log.flush(1e9);
  assert.equal(events.length, 4, "nothing else was suppressed");
});
