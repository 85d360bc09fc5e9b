// The hello example in JavaScript: one task that reads `name` (default
// "world") and writes `greeting`, as the Rust one does.
import { log, task, workflow } from "@culvert/sdk";

workflow({ name: "hello", description: "Greets `name`." }, [
  task({ id: "greet", description: "Reads `name` (default \"world\") and writes `greeting`." }, (ctx) => {
    const greeting = `Hello, ${ctx.get("name", "world")}!`;
    log.info(greeting);
    ctx.set("greeting", greeting);
  }),
]);
