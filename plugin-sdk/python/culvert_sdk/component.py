"""The component's exports, for componentize-py: ``Metadata`` and
``Task`` over the bindings of the contract's world (``wit_world``, which
exists only while the package is being built). The entry module that
``culvert package build`` writes imports the package, then these.
"""

from __future__ import annotations

from typing import Any

from componentize_py_types import Err  # type: ignore[import-not-found]
from wit_world import exports  # type: ignore[import-not-found]
from wit_world.imports import host  # type: ignore[import-not-found]
from wit_world.imports import types as t  # type: ignore[import-not-found]

from . import log as _log
from .context import Attempt
from .errors import TaskError
from .runtime import describe, run

_LEVELS = {
    "trace": t.LogLevel.TRACE,
    "debug": t.LogLevel.DEBUG,
    "info": t.LogLevel.INFO,
    "warn": t.LogLevel.WARN,
    "error": t.LogLevel.ERROR,
}
_BACKOFF = {"fixed": t.Backoff.FIXED, "linear": t.Backoff.LINEAR, "exponential": t.Backoff.EXPONENTIAL}
_RETRY_ON = {"all": t.RetryOn.ALL_ERRORS, "transient": t.RetryOn.TRANSIENT_ONLY, "never": t.RetryOn.NEVER}
_CATCH_UP = {"skip": t.CatchUp.SKIP, "latest": t.CatchUp.LATEST, "all": t.CatchUp.ALL}
_OVERLAP = {"allow": t.Overlap.ALLOW, "skip": t.Overlap.SKIP, "queue_one": t.Overlap.QUEUE_ONE}


def _sink(level: str, message: str, fields: list[tuple[str, str]]) -> None:
    host.log(_LEVELS[level], message, fields)


_log._sink = _sink


def _condition(c: Any) -> Any:
    import json

    if c.kind == "task-succeeded":
        return t.Condition_TaskSucceeded(c.key)
    if c.kind == "task-failed":
        return t.Condition_TaskFailed(c.key)
    if c.kind == "task-skipped":
        return t.Condition_TaskSkipped(c.key)
    if c.kind == "context-exists":
        return t.Condition_ContextExists(c.key)
    kv = t.KeyValue(key=c.key, value_json=json.dumps(c.value))
    return {
        "context-equals": t.Condition_ContextEquals,
        "context-not-equals": t.Condition_ContextNotEquals,
        "context-greater-than": t.Condition_ContextGreaterThan,
        "context-less-than": t.Condition_ContextLessThan,
        "context-contains": t.Condition_ContextContains,
    }[c.kind](kv)


def _trigger(rule: Any) -> Any:
    if rule is None:
        return None
    if rule.kind == "always":
        return t.TriggerRule_Always()
    conditions = [_condition(c) for c in rule.conditions]
    return {"all": t.TriggerRule_All, "any": t.TriggerRule_Any, "none": t.TriggerRule_None_}[rule.kind](conditions)


def _retry(r: Any) -> Any:
    return t.RetryPolicy(
        max_attempts=r.max_attempts,
        backoff=_BACKOFF[r.backoff],
        initial_delay_ms=r.initial_delay_ms,
        max_delay_ms=r.max_delay_ms,
        jitter=r.jitter,
        retry_on=_RETRY_ON[r.retry_on],
    )


class Metadata(exports.Metadata):
    """The contract's ``metadata`` export."""

    def describe(self) -> Any:
        import json

        d = describe()
        caps = d["capabilities"]
        return t.PackageInfo(
            name=d["name"],
            version=d["version"],
            description=d["description"],
            author=d["author"],
            contract_version=d["contract_version"],
            sdk_version=d["sdk_version"],
            workflows=[
                t.WorkflowSpec(
                    name=w["name"],
                    description=w["description"],
                    tasks=[
                        t.TaskSpec(
                            id=k["id"],
                            description=k["description"],
                            dependencies=k["dependencies"],
                            retry=_retry(k["retry"]),
                            timeout_ms=k["timeout_ms"],
                            trigger=_trigger(k["trigger"]),
                        )
                        for k in w["tasks"]
                    ],
                )
                for w in d["workflows"]
            ],
            capabilities=t.Capabilities(
                env=list(caps.env),
                dirs=[t.DirRequest(guest_path=p, writable=w) for p, w in caps.dirs],
                http_hosts=list(caps.http_hosts),
                wall_clock=caps.wall_clock,
                random=caps.random,
            ),
            schedules=[
                t.ScheduleSpec(
                    workflow=name,
                    cron=s.cron,
                    timezone=s.timezone,
                    context_json=json.dumps(s.context),
                    catch_up=_CATCH_UP[s.catch_up],
                    catch_up_cap=s.catch_up_cap,
                    overlap=_OVERLAP[s.overlap],
                )
                for name, s in d["schedules"]
            ],
        )


class Task(exports.Task):
    """The contract's ``task`` export."""

    def run(self, workflow: str, task: str, context_json: str, attempt: Any) -> str:
        try:
            return run(
                workflow,
                task,
                context_json,
                Attempt(attempt.execution_id, attempt.attempt, attempt.max_attempts),
            )
        except TaskError as e:
            kind = t.ErrorKind.TRANSIENT if e.kind == TaskError.TRANSIENT else t.ErrorKind.PERMANENT
            raise Err(t.TaskError(kind=kind, message=e.message)) from None
