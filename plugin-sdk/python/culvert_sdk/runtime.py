"""What the component's exports do, in plain Python (so that it can be
tested natively): :func:`describe` and :func:`run`."""

from __future__ import annotations

import json
from typing import Any

from .context import Attempt, Context
from .definitions import registry
from .errors import TaskError

__all__ = ["CONTRACT_VERSION", "SDK_VERSION", "PackageFacts", "facts", "describe", "run"]

#: The version of the WIT contract (culvert:plugin) this SDK builds against.
CONTRACT_VERSION = "0.2.0"
#: This SDK's version.
SDK_VERSION = "python-0.1.0"


class PackageFacts:
    """Name, version, description and author: set by ``culvert package
    build`` from ``pyproject.toml`` (``[project]``)."""

    name = ""
    version = ""
    description = ""
    author = ""


facts = PackageFacts()


def describe() -> dict[str, Any]:
    """The package's metadata, as plain data (the shape of the contract's
    ``package-info``)."""
    caps = registry.capabilities
    return {
        "name": facts.name,
        "version": facts.version,
        "description": facts.description,
        "author": facts.author,
        "contract_version": CONTRACT_VERSION,
        "sdk_version": SDK_VERSION,
        "workflows": [
            {
                "name": w.name,
                "description": w.description,
                "tasks": [
                    {
                        "id": t.id,
                        "description": t.description,
                        "dependencies": list(t.dependencies),
                        "retry": t.retry,
                        "timeout_ms": t.timeout_ms,
                        "trigger": t.trigger,
                    }
                    for t in w.tasks
                ],
            }
            for w in registry.workflows
        ],
        "capabilities": caps,
        "schedules": [(w.name, s) for w in registry.workflows for s in w.schedules],
    }


def run(workflow: str, task: str, context_json: str, attempt: Attempt) -> str:
    """Run one task: parse the context, call the task, return the new
    context as JSON. Raises :class:`TaskError`; any other exception becomes
    a permanent one naming its type."""
    wf = registry.workflow(workflow)
    if wf is None:
        raise TaskError.permanent(f"this package has no workflow '{workflow}'")
    spec = next((t for t in wf.tasks if t.id == task), None)
    if spec is None:
        raise TaskError.permanent(f"workflow '{workflow}' has no task '{task}'")
    try:
        data = json.loads(context_json)
    except ValueError as e:
        raise TaskError.permanent(f"the context is not a JSON object: {e}") from None
    if not isinstance(data, dict):
        raise TaskError.permanent("the context is not a JSON object")
    ctx = Context(data, attempt)
    try:
        result = spec.func(ctx)
        if hasattr(result, "__await__"):
            raise TaskError.permanent(f"task '{task}' returned an awaitable: tasks are synchronous")
    except TaskError:
        raise
    except Exception as e:  # a bug in the task: permanent, named
        raise TaskError.permanent(f"{type(e).__name__}: {e}") from None
    try:
        return json.dumps(ctx.to_dict(), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise TaskError.permanent(f"the output context does not serialize: {e}") from None
