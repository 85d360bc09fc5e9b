// The JavaScript SDK natively (no component): the context rules, the
// definition checks and a task run. `scripts/test` runs these with node.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BuildError, Context, ContextError, Retry, TaskError, runTask, task, workflow, succeeded, allOf } from "../src/index.js";

test("insert refuses overwrite and update refuses create", () => {
  const ctx = new Context({ a: 1 });
  assert.throws(() => ctx.insert("a", 2), ContextError);
  assert.throws(() => ctx.update("b", 2), ContextError);
  ctx.update("a", 3);
  ctx.insert("b", [1]);
  assert.deepEqual(ctx.data, { a: 3, b: [1] });
  assert.equal(ctx.get("missing", 7), 7);
  assert.throws(() => ctx.get("missing"), (e) => e instanceof TaskError && e.kind === "permanent");
  assert.equal(ctx.remove("a"), 3);
  assert.deepEqual(ctx.keys(), ["b"]);
});

test("the Rust SDK's checks", () => {
  assert.throws(() => Retry({ maxAttempts: 0 }), /maxAttempts must be between 1 and 100/);
  assert.throws(() => Retry({ initialDelayMs: 5, maxDelayMs: 1 }), BuildError);
  assert.throws(() => task({ id: "bad id" }, () => {}), BuildError);
  const noop = () => {};
  assert.throws(() => workflow({ name: "w1" }, [task({ id: "a", dependencies: ["ghost"] }, noop)]), /depends on unknown task 'ghost'/);
  assert.throws(
    () => workflow({ name: "w2" }, [task({ id: "a", dependencies: ["b"] }, noop), task({ id: "b", dependencies: ["a"] }, noop)]),
    /dependency cycle/,
  );
  assert.throws(() => workflow({ name: "w3" }, [task({ id: "a" }, noop), task({ id: "a" }, noop)]), /duplicate task id 'a'/);
  assert.throws(
    () => workflow({ name: "w4" }, [task({ id: "a" }, noop), task({ id: "b", trigger: allOf(succeeded("a")) }, noop)]),
    /not one of its dependencies/,
  );
});

test("what the host would refuse, refused at once", () => {
  assert.throws(() => allOf(), /needs at least one condition/);
  assert.throws(() => task({ id: "a" }, async () => {}), /tasks are synchronous/);
});

test("a task runs, and its errors are typed", () => {
  workflow({ name: "hi" }, [
    task({ id: "greet" }, (ctx) => ctx.set("greeting", `Hello, ${ctx.get("name", "world")}!`)),
    task({ id: "fail" }, () => {
      throw TaskError.transient("later");
    }),
    task({ id: "bug" }, () => {
      throw new RangeError("oops");
    }),
  ]);
  assert.equal(runTask("hi", "greet", '{"name":"JS"}'), '{"name":"JS","greeting":"Hello, JS!"}');
  assert.throws(() => runTask("hi", "fail", "{}"), (e) => e.kind === "transient");
  assert.throws(() => runTask("hi", "bug", "{}"), (e) => e.kind === "permanent" && /RangeError: oops/.test(e.message));
  assert.throws(() => runTask("hi", "nope", "{}"), /has no task 'nope'/);
});
