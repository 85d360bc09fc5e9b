"""The Python SDK natively (no component): the context rules, task errors,
the definition checks, and the etl example run task by task to the Rust
example's results. `scripts/test` runs these with the toolchain's Python."""

import json
import pathlib
import sys
import unittest

from culvert_sdk import BuildError, Context, ContextError, Retry, TaskError, task, workflow
from culvert_sdk import runtime
from culvert_sdk.context import Attempt
from culvert_sdk.definitions import registry

EXAMPLE = pathlib.Path(__file__).resolve().parents[3] / "examples" / "python-etl"


class ContextRules(unittest.TestCase):
    def test_insert_refuses_overwrite_and_update_refuses_create(self):
        ctx = Context({"a": 1})
        with self.assertRaises(ContextError):
            ctx.insert("a", 2)
        with self.assertRaises(ContextError):
            ctx.update("b", 2)
        ctx.update("a", 3)
        ctx.insert("b", [1])
        ctx.set("a", 4)
        self.assertEqual(ctx.to_dict(), {"a": 4, "b": [1]})
        self.assertEqual(ctx.get("missing", 7), 7)
        with self.assertRaises(ContextError) as e:
            ctx.get("missing")
        self.assertEqual(e.exception.kind, "permanent")
        self.assertEqual(ctx.remove("a"), 4)
        self.assertIsNone(ctx.remove("a"))
        self.assertEqual(ctx.keys(), ["b"])

    def test_values_must_be_json(self):
        with self.assertRaises(ContextError):
            Context().set("x", object())
        with self.assertRaises(ContextError):
            Context().set("x", float("nan"))


class Definitions(unittest.TestCase):
    def test_the_rust_sdks_checks(self):
        with self.assertRaises(BuildError):
            Retry(max_attempts=101)
        with self.assertRaises(BuildError):
            Retry(initial_delay_ms=5, max_delay_ms=1)
        with self.assertRaises(BuildError):
            Retry(backoff="random")
        with self.assertRaises(BuildError):
            task(id="bad id")
        with self.assertRaises(BuildError):
            task(id="t", timeout_ms=0)
        with self.assertRaisesRegex(BuildError, "has no tasks"):
            @workflow(name="empty")
            class Empty:
                pass

    def test_what_the_host_would_refuse_is_refused_at_once(self):
        from culvert_sdk import all_of, capabilities

        with self.assertRaisesRegex(BuildError, "at least one condition"):
            all_of()
        with self.assertRaisesRegex(BuildError, "not async def"):
            task(id="a")(self._async_task)
        with self.assertRaises(BuildError):
            task(id="abc\n")
        with self.assertRaises(BuildError):
            capabilities(env="HOME")

    def test_one_function_for_several_tasks(self):
        def noop(ctx):
            pass

        @workflow(name="shared")
        class Shared:
            a = task(id="a")(noop)
            b = task(id="b", dependencies=["a"])(noop)

        self.assertEqual([t.id for t in registry.workflow("shared").tasks], ["a", "b"])

    @staticmethod
    async def _async_task(ctx):
        pass

    def test_task_errors(self):
        self.assertEqual(TaskError.transient("x").kind, "transient")
        self.assertEqual(TaskError.permanent("x").kind, "permanent")
        with self.assertRaises(ValueError):
            TaskError("sometimes", "x")


class Declarations(unittest.TestCase):
    def test_schedules_and_capabilities_reach_describe(self):
        from culvert_sdk import Schedule, capabilities

        @workflow(name="nightly", schedules=[Schedule(cron="0 0 3 * * *", timezone="Europe/Berlin", context={"full": True})])
        class Nightly:
            @task(id="run")
            def run(ctx):
                pass

        capabilities(env=["TOKEN"], dirs=[("/data", True), "/ro"], http_hosts=["api.example.com"], wall_clock=True)
        d = runtime.describe()
        (name, schedule), = [(n, s) for n, s in d["schedules"] if n == "nightly"]
        self.assertEqual(schedule.cron, "0 0 3 * * *")
        self.assertEqual(schedule.timezone, "Europe/Berlin")
        self.assertEqual(schedule.context, {"full": True})
        caps = d["capabilities"]
        self.assertEqual(caps.env, ("TOKEN",))
        self.assertEqual(caps.dirs, (("/data", True), ("/ro", False)))
        self.assertTrue(caps.wall_clock and not caps.random)
        with self.assertRaises(BuildError):
            Schedule(cron="0 * * * * *", catch_up_cap=0)
        with self.assertRaises(BuildError):
            capabilities(dirs=["relative"])


class EtlExample(unittest.TestCase):
    """The example run natively, task by task, as the host would."""

    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, str(EXAMPLE))
        import app  # noqa: F401  (registers `etl`)

    def run_etl(self, context):
        wf = registry.workflow("etl")
        ctx = dict(context)
        for t in wf.tasks:
            if t.id == "notify" and ctx.get("notify") is not True:
                continue
            out = runtime.run("etl", t.id, json.dumps(ctx), Attempt("e", 1, 1))
            ctx = json.loads(out)
        return ctx

    def test_the_same_results_as_the_rust_example(self):
        ctx = self.run_etl({"notify": True})
        self.assertEqual(ctx["loaded"], [10, 20, 30, 40, 50])
        self.assertEqual(ctx["total"], 150)
        self.assertEqual(ctx["notified"], "loaded a total of 150")
        ctx = self.run_etl({"source_rows": [3, -1, 4], "factor": 2})
        self.assertEqual(ctx["clean_rows"], [3, 4])
        self.assertEqual(ctx["total"], 14)

    def test_a_task_error_is_typed(self):
        with self.assertRaises(TaskError) as e:
            runtime.run("etl", "enrich", json.dumps({"factor": 0}), Attempt())
        self.assertEqual(e.exception.kind, "permanent")
        with self.assertRaisesRegex(TaskError, "has no task 'nope'"):
            runtime.run("etl", "nope", "{}", Attempt())

    def test_describe(self):
        d = runtime.describe()
        etl = next(w for w in d["workflows"] if w["name"] == "etl")
        self.assertEqual([t["id"] for t in etl["tasks"]], ["extract", "clean", "enrich", "load", "notify"])
        enrich = etl["tasks"][2]
        self.assertEqual(enrich["retry"].max_attempts, 3)
        self.assertEqual(enrich["timeout_ms"], 5000)
        self.assertEqual(d["contract_version"], "0.2.0")


if __name__ == "__main__":
    unittest.main()
