"""The `etl` workflow in Python: the same tasks, rules and results as the
Rust example in examples/etl.

             ┌─> clean ────────┐
    extract ─┤                 ├─> load ─> notify (only if `notify` is true)
             └─> enrich ───────┘
"""

from culvert_sdk import Context, Retry, TaskError, all_of, equals, log, succeeded, task, workflow


@workflow(name="etl", description="Extract rows, clean and enrich them in parallel, load the result.")
class Etl:
    @task(id="extract")
    def extract(ctx: Context) -> None:
        """Produces the raw rows: `rows`, from the initial context's
        `source_rows` if given, else 1..=5."""
        rows = ctx.get("source_rows", [1, 2, 3, 4, 5])
        log.info("extracted rows", count=len(rows))
        ctx.set("rows", rows)

    @task(id="clean", dependencies=["extract"])
    def clean(ctx: Context) -> None:
        """Drops negative rows: writes `clean_rows`."""
        ctx.insert("clean_rows", [r for r in ctx.get("rows") if r >= 0])

    @task(
        id="enrich",
        dependencies=["extract"],
        retry=Retry(max_attempts=3, backoff="exponential", initial_delay_ms=50, max_delay_ms=1000),
        timeout_ms=5000,
    )
    def enrich(ctx: Context) -> None:
        """Looks up a factor for the rows: writes `factor`. Retried on
        transient failures."""
        factor = ctx.get("factor", 10)
        if factor == 0:
            raise TaskError.permanent("factor must not be zero")
        ctx.set("factor", factor)

    @task(id="load", dependencies=["clean", "enrich"])
    def load(ctx: Context) -> None:
        """Fan-in: multiplies the clean rows by the factor and writes
        `loaded` and `total`."""
        factor = ctx.get("factor")
        loaded = [r * factor for r in ctx.get("clean_rows")]
        ctx.insert("loaded", loaded)
        ctx.insert("total", sum(loaded))

    @task(
        id="notify",
        dependencies=["load"],
        trigger=all_of(succeeded("load"), equals("notify", True)),
    )
    def notify(ctx: Context) -> None:
        """Runs only when the initial context sets `notify` to true."""
        ctx.insert("notified", f"loaded a total of {ctx.get('total')}")
