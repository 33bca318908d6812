import assert from "node:assert/strict";
import { DrainLoop } from "../../lib/io/drain_loop.ts";

/** Lets every pending microtask run (one macrotask turn): a sync point, not a wait for time. */
const settle = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

Deno.test("drain loop: items in order, one step at a time, restarted by the next kick", async () => {
  const queue: number[] = [1, 2, 3];
  const done: number[] = [];
  let inStep = 0;
  let most = 0;
  const loop = new DrainLoop(() => queue.shift(), async (n) => {
    most = Math.max(most, ++inStep);
    await Promise.resolve();
    done.push(n);
    inStep--;
  });
  loop.kick();
  loop.kick(); // (running: no second loop)
  assert.equal(loop.running, true);
  await settle();
  assert.deepEqual(done, [1, 2, 3]);
  assert.equal(most, 1);
  assert.equal(loop.running, false);
  queue.push(4);
  loop.kick();
  await settle();
  assert.deepEqual(done, [1, 2, 3, 4]);
});

Deno.test("drain loop: an item queued at any moment after the last step is never stranded", async () => {
  // the server's old form (`running ??= loop().finally(() => running = undefined)`) left an
  // item queued a few microtask turns after the last step waiting for a later kick
  for (let hops = 0; hops < 16; hops++) {
    const queue: string[] = ["first"];
    const done: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    const loop = new DrainLoop(() => queue.shift(), async (item) => {
      if (item === "first") await gate;
      done.push(item);
    });
    loop.kick();
    release();
    for (let i = 0; i < hops; i++) await Promise.resolve();
    queue.push("second");
    loop.kick();
    await settle();
    assert.deepEqual(done, ["first", "second"], `queued ${hops} microtask turns after`);
    assert.equal(queue.length, 0);
    assert.equal(loop.running, false);
  }
});

Deno.test("drain loop: a step that throws goes to onError and the loop goes on", async () => {
  const queue = ["a", "bad", "c"];
  const done: string[] = [];
  const errors: string[] = [];
  const loop = new DrainLoop(
    () => queue.shift(),
    (item) => {
      if (item === "bad") return Promise.reject(new Error("boom"));
      done.push(item);
      return Promise.resolve();
    },
    (item, e) => {
      errors.push(`${item}: ${(e as Error).message}`);
      throw new Error("the error reply failed too"); // (dropped)
    },
  );
  loop.kick();
  await settle();
  assert.deepEqual(done, ["a", "c"]);
  assert.deepEqual(errors, ["bad: boom"]);
  assert.equal(loop.running, false);
});
