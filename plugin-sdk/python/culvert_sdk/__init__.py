"""Write Culvert workflow packages in Python.

A package is a module whose classes are workflows::

    from culvert_sdk import Context, Retry, TaskError, task, workflow, all_of, succeeded, equals

    @workflow(name="etl", description="Extract, transform, load.")
    class Etl:
        @task(id="extract")
        def extract(ctx: Context) -> None:
            ctx.insert("rows", [1, 2, 3])

        @task(id="load", dependencies=["extract"], retry=Retry(max_attempts=3))
        def load(ctx: Context) -> None:
            ctx.insert("total", sum(ctx.get("rows")))

``culvert package build DIR --out FILE.wasm`` makes the WebAssembly
component (with componentize-py) against the same contract as the Rust
SDK's packages, and runs it under the same sandbox and limits.
"""

from . import log
from .context import Attempt, Context, ContextError
from .definitions import (
    Capabilities,
    Condition,
    Retry,
    Schedule,
    Trigger,
    all_of,
    always,
    any_of,
    capabilities,
    contains,
    equals,
    exists,
    failed,
    greater_than,
    less_than,
    none_of,
    not_equals,
    skipped,
    succeeded,
    task,
    workflow,
)
from .errors import BuildError, TaskError
from .runtime import CONTRACT_VERSION, SDK_VERSION

__all__ = [
    "Attempt", "BuildError", "Capabilities", "Condition", "Context", "ContextError",
    "CONTRACT_VERSION", "Retry", "SDK_VERSION", "Schedule", "TaskError", "Trigger",
    "all_of", "always", "any_of", "capabilities", "contains", "equals", "exists", "failed",
    "greater_than", "less_than", "log", "none_of", "not_equals", "skipped", "succeeded",
    "task", "workflow",
]
