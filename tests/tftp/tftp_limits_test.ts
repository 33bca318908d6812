import assert from "node:assert/strict";
import {
  MAX_TFTP_TRANSFERS,
  MAX_TFTP_TRANSFERS_PER_CLIENT,
  MAX_UNPROVEN,
  MAX_UNPROVEN_PER_CLIENT,
  TftpAdmission,
} from "../../lib/tftp/tftp_limits.ts";

Deno.test("admission: unproven transfers per IP are capped, silently; proving frees the slot", () => {
  const a = new TftpAdmission();
  for (let i = 0; i < MAX_UNPROVEN_PER_CLIENT; i++) assert.equal(a.admit("10.0.0.1"), undefined);
  assert.deepEqual(a.admit("10.0.0.1")?.silent, true, "no answer to a maybe-forged address");
  assert.equal(a.admit("10.0.0.2"), undefined, "other addresses are not affected");
  a.prove("10.0.0.1");
  assert.equal(a.admit("10.0.0.1"), undefined);
  assert.equal(a.unproven, MAX_UNPROVEN_PER_CLIENT + 1);
});

Deno.test("admission: per-client total is the udpget limit, answered with an error", () => {
  const a = new TftpAdmission();
  for (let i = 0; i < MAX_TFTP_TRANSFERS_PER_CLIENT; i++) {
    assert.equal(a.admit("10.0.0.1"), undefined);
    a.prove("10.0.0.1");
  }
  const r = a.admit("10.0.0.1");
  assert.equal(r?.silent, false);
  assert.match(r?.message ?? "", /too many transfers/);
  a.release("10.0.0.1", true);
  assert.equal(a.admit("10.0.0.1"), undefined);
});

Deno.test("admission: server-wide caps (unproven and total); release returns everything", () => {
  const a = new TftpAdmission();
  for (let i = 0; i < MAX_UNPROVEN; i++) {
    assert.equal(a.admit(`10.1.${i >> 8}.${i & 255}`), undefined);
  }
  assert.equal(a.admit("10.2.0.1")?.silent, true, "unproven total");
  for (let i = 0; i < MAX_UNPROVEN; i++) a.prove(`10.1.${i >> 8}.${i & 255}`);
  let n = MAX_UNPROVEN;
  for (; n < MAX_TFTP_TRANSFERS; n++) {
    const ip = `10.3.${n >> 8}.${n & 255}`;
    assert.equal(a.admit(ip), undefined);
    a.prove(ip);
  }
  assert.deepEqual(a.admit("10.4.0.1"), { silent: false, message: "server busy" });
  for (let i = 0; i < MAX_UNPROVEN; i++) a.release(`10.1.${i >> 8}.${i & 255}`, true);
  for (let i = MAX_UNPROVEN; i < MAX_TFTP_TRANSFERS; i++) {
    a.release(`10.3.${i >> 8}.${i & 255}`, true);
  }
  assert.equal(a.total, 0);
  assert.equal(a.unproven, 0);
  assert.equal(a.clients, 0, "nothing kept per address once released");
});

Deno.test("admission: releasing an unproven transfer frees its unproven slot", () => {
  const a = new TftpAdmission();
  for (let i = 0; i < 10; i++) {
    assert.equal(a.admit("10.0.0.9"), undefined);
    a.release("10.0.0.9", false);
  }
  assert.equal(a.unproven, 0);
  assert.equal(a.total, 0);
});
