// `culvert bench languages`'s JavaScript package: the Rust `hello` and
// `shapes`'s `ten`. Built with examples/js-hello's installs (bench
// instructions in docs/PERFORMANCE.md link its node_modules here).
import { task, workflow } from "@culvert/sdk";

workflow({ name: "hello" }, [
  task({ id: "greet" }, (ctx) => ctx.set("greeting", `Hello, ${ctx.get("name", "world")}!`)),
]);

const noop = () => {};
const parallel = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => task({ id: `p${i}`, dependencies: ["root"] }, noop));
workflow({ name: "ten" }, [
  task({ id: "root" }, noop),
  ...parallel,
  task({ id: "join", dependencies: parallel.map((t) => t.id) }, noop),
]);
