import assert from "node:assert/strict";
import { RequestGate } from "../../lib/serving/request_gate.ts";
import { CookieJar } from "../../lib/wire/cookie.ts";
import { RequestAuthenticator, seal } from "../../lib/wire/auth.ts";
import { decode, encode, ErrorCode, NO_TOKEN, TOKEN_PROBE_NAME } from "../../lib/wire/packet.ts";

const NOW = 1_700_000_000_000;
const jar = () => new CookieJar(new Uint8Array(32).fill(1));
const meta = (token = NO_TOKEN, name = "a") =>
  encode({ type: "meta_request", requestId: 42, token, name });
const chunk = (token = NO_TOKEN) =>
  encode({
    type: "chunk_request",
    requestId: 43,
    token,
    fileId: 7n,
    offset: 0,
    length: 1 << 20,
    blockSize: 1444,
    name: "a-long-file-name.bin",
  });

Deno.test("gate: an unproven address gets a RETRY; with its token the request is served", () => {
  const gate = new RequestGate(jar(), undefined);
  const d = gate.admit(meta(), "10.0.0.1", NOW);
  assert.equal(d.kind, "answer");
  if (d.kind !== "answer") return;
  assert.ok(d.bytes.length <= 3 * meta().length);
  const r = decode(d.bytes);
  assert.ok(r.ok && r.packet.type === "retry");
  if (!r.ok || r.packet.type !== "retry") return;
  const served = gate.admit(meta(r.packet.token), "10.0.0.1", NOW);
  assert.equal(served.kind, "serve");
  assert.equal(gate.admit(meta(r.packet.token), "10.0.0.2", NOW).kind, "answer", "other address");
});

Deno.test("gate: noise and reply types are dropped; malformed requests get the right error", () => {
  const gate = new RequestGate(jar(), undefined);
  assert.deepEqual(gate.admit(new Uint8Array([1, 2, 3]), "h", NOW), { kind: "drop", why: "noise" });
  const reply = encode({ type: "retry", requestId: 1, token: NO_TOKEN });
  assert.deepEqual(gate.admit(reply, "h", NOW), { kind: "drop", why: "reply_type" });
  const bad = meta();
  bad[2] = 9; // version
  const d = gate.admit(bad, "h", NOW);
  assert.equal(d.kind, "answer");
  if (d.kind === "answer") {
    const r = decode(d.bytes);
    assert.ok(r.ok && r.packet.type === "error" && r.packet.code === ErrorCode.BadVersion);
  }
});

Deno.test("gate: with a key, an unsealed request gets AUTH_FAILED only; a sealed one goes on", () => {
  const key = new Uint8Array(32).fill(3);
  const gate = new RequestGate(jar(), new RequestAuthenticator(key));
  const d = gate.admit(meta(), "h", NOW);
  assert.equal(d.kind, "answer");
  if (d.kind === "answer") {
    const r = decode(d.bytes);
    assert.ok(r.ok && r.packet.type === "error" && r.packet.code === ErrorCode.AuthFailed);
  }
  const sealed = seal(chunk(), key, NOW, new Uint8Array(8).fill(4));
  const ok = gate.admit(sealed, "h", NOW);
  assert.equal(ok.kind, "answer"); // proven key, unproven address: RETRY next
  if (ok.kind === "answer") assert.equal(ok.why, "retry");
});

Deno.test("gate: a metadata request whose answer fits 3x its size is answered unproven", () => {
  const gate = new RequestGate(jar(), undefined);
  // 33 bytes may bring the 97-byte META_REPLY (99 >= 97); 29 bytes may not, nor a name-less
  // request (a token probe, `/`), nor a chunk request (its answer is megabytes)
  const enough = meta(NO_TOKEN, "a.txt");
  assert.equal(enough.length, 33);
  assert.equal(gate.admit(enough, "10.0.0.9", NOW).kind, "serve");
  for (const small of [meta(NO_TOKEN, "a"), meta(NO_TOKEN, TOKEN_PROBE_NAME), chunk()]) {
    const d = gate.admit(small, "10.0.0.9", NOW);
    assert.ok(d.kind === "answer" && d.why === "retry");
    assert.ok(d.bytes.length <= 3 * small.length, "a RETRY never amplifies");
  }
});

Deno.test("gate: an unfragmented chunk request is served where the socket can, else UNSUPPORTED", () => {
  const capable = new RequestGate(jar(), undefined, true);
  const token = capable.cookies.issue("h", NOW);
  const request = (gate: RequestGate) => {
    const r = decode(chunk(token));
    assert.ok(r.ok && r.packet.type === "chunk_request");
    return gate.admit(encode({ ...r.packet, unfragmented: true }), "h", NOW);
  };
  const served = request(capable);
  assert.ok(served.kind === "serve" && served.request.type === "chunk_request");
  assert.equal(served.request.unfragmented, true);
  // the pure-Deno socket layer cannot keep the kernel from fragmenting: it says so, as a server
  // that does not know the flag would, and the client's probe then proves nothing through it
  const refused = request(new RequestGate(capable.cookies, undefined, false));
  assert.ok(refused.kind === "answer" && refused.why === "malformed");
  const r = decode(refused.bytes);
  assert.ok(r.ok && r.packet.type === "error" && r.packet.code === ErrorCode.Unsupported);
  assert.equal(r.packet.requestId, 43);
});
