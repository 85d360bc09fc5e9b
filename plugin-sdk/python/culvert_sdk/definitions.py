"""What a package declares: workflows of tasks (:func:`workflow`,
:func:`task`), retry policies (:class:`Retry`), trigger rules, schedules
(:class:`Schedule`) and capabilities (:func:`capabilities`).

Every rule the host would enforce when it loads the package is checked
here, when the module is imported (so when the package is built), with the
same words as the Rust SDK's compile errors: a :class:`BuildError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .errors import BuildError

__all__ = [
    "Retry", "Schedule", "Capabilities", "Trigger", "Condition",
    "succeeded", "failed", "skipped", "exists", "equals", "not_equals",
    "greater_than", "less_than", "contains", "all_of", "any_of", "none_of", "always",
    "task", "workflow", "capabilities", "registry",
]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DAY_MS = 86_400_000


def _identifier(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BuildError(f"invalid {what} {value!r}: use 1 to 128 of [A-Za-z0-9_-]")
    return value


@dataclass(frozen=True)
class Retry:
    """When a failed task is attempted again. The defaults are the Rust
    SDK's ``retry(...)``: 3 attempts, exponential backoff from 1 s to 60 s
    with jitter, transient errors only. A task without ``retry`` is
    attempted once."""

    max_attempts: int = 3
    backoff: str = "exponential"
    initial_delay_ms: int = 1000
    max_delay_ms: int = 60_000
    jitter: bool = True
    retry_on: str = "transient"

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or not 1 <= self.max_attempts <= 100:
            raise BuildError("invalid retry policy: max_attempts must be between 1 and 100")
        if self.backoff not in ("fixed", "linear", "exponential"):
            raise BuildError(
                f"invalid retry policy: unknown backoff {self.backoff!r}, expected \"fixed\", \"linear\" or \"exponential\""
            )
        for name in ("initial_delay_ms", "max_delay_ms"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise BuildError(f"invalid retry policy: {name} must be a non-negative integer")
        if self.max_delay_ms > _DAY_MS:
            raise BuildError("invalid retry policy: max_delay_ms is over 86400000 (24 hours)")
        if self.initial_delay_ms > self.max_delay_ms:
            raise BuildError(
                f"invalid retry policy: initial_delay_ms ({self.initial_delay_ms}) is above max_delay_ms ({self.max_delay_ms})"
            )
        if self.retry_on not in ("all", "transient", "never"):
            raise BuildError(
                f"invalid retry policy: unknown retry_on {self.retry_on!r}, expected \"all\", \"transient\" or \"never\""
            )


#: No retries: what a task without ``retry=`` gets.
NO_RETRY = Retry(max_attempts=1)


@dataclass(frozen=True)
class Condition:
    """One condition of a trigger rule (see :func:`succeeded` and the rest)."""

    kind: str
    key: str
    value: Any = None


def succeeded(task_id: str) -> Condition:
    """The named dependency completed."""
    return Condition("task-succeeded", task_id)


def failed(task_id: str) -> Condition:
    """The named dependency failed for good."""
    return Condition("task-failed", task_id)


def skipped(task_id: str) -> Condition:
    """The named dependency was skipped."""
    return Condition("task-skipped", task_id)


def exists(key: str) -> Condition:
    """The context holds ``key``."""
    return Condition("context-exists", key)


def equals(key: str, value: Any) -> Condition:
    """The context value at ``key`` equals ``value``."""
    return Condition("context-equals", key, value)


def not_equals(key: str, value: Any) -> Condition:
    """The context value at ``key`` is absent or differs from ``value``."""
    return Condition("context-not-equals", key, value)


def greater_than(key: str, value: float) -> Condition:
    """Both are numbers and the context value is greater."""
    return Condition("context-greater-than", key, value)


def less_than(key: str, value: float) -> Condition:
    """Both are numbers and the context value is smaller."""
    return Condition("context-less-than", key, value)


def contains(key: str, value: Any) -> Condition:
    """The context value is a string containing, or an array holding, ``value``."""
    return Condition("context-contains", key, value)


@dataclass(frozen=True)
class Trigger:
    """When a task runs once its dependencies finished: ``always()``, or
    ``all_of``/``any_of``/``none_of`` conditions."""

    kind: str
    conditions: tuple[Condition, ...] = ()


def _rule(kind: str, conditions: tuple[Condition, ...]) -> Trigger:
    if not conditions:
        raise BuildError(f"a trigger rule {kind}_of(...) needs at least one condition")
    return Trigger(kind, conditions)


def all_of(*conditions: Condition) -> Trigger:
    """Run when every condition holds."""
    return _rule("all", conditions)


def any_of(*conditions: Condition) -> Trigger:
    """Run when at least one condition holds."""
    return _rule("any", conditions)


def none_of(*conditions: Condition) -> Trigger:
    """Run when no condition holds."""
    return _rule("none", conditions)


def always() -> Trigger:
    """Run whatever happened to the dependencies."""
    return Trigger("always")


@dataclass(frozen=True)
class Schedule:
    """A schedule of the workflow, declared with the package: the host
    starts it at each due time of ``cron`` (six fields with seconds first,
    or the classic five) in ``timezone``. The host checks the expression
    and timezone when the package is added."""

    cron: str
    timezone: str = "UTC"
    context: dict[str, Any] = field(default_factory=dict)
    catch_up: str = "skip"
    catch_up_cap: int = 10
    overlap: str = "allow"

    def __post_init__(self) -> None:
        if not isinstance(self.cron, str) or not self.cron.strip():
            raise BuildError("a schedule needs a cron expression")
        if self.catch_up not in ("skip", "latest", "all"):
            raise BuildError(f"unknown catch_up {self.catch_up!r}: expected skip, latest or all")
        if self.overlap not in ("allow", "skip", "queue_one"):
            raise BuildError(f"unknown overlap {self.overlap!r}: expected allow, skip or queue_one")
        if not isinstance(self.catch_up_cap, int) or not 1 <= self.catch_up_cap <= 100:
            raise BuildError("catch_up_cap must be 1 to 100")
        if not isinstance(self.context, dict):
            raise BuildError("a schedule's context is a dict (a JSON object)")
        json.dumps(self.context)


@dataclass(frozen=True)
class Capabilities:
    """What the package asks for. Nothing is granted by asking: an operator
    must grant it too."""

    env: tuple[str, ...] = ()
    dirs: tuple[tuple[str, bool], ...] = ()
    http_hosts: tuple[str, ...] = ()
    wall_clock: bool = False
    random: bool = False


@dataclass
class TaskDef:
    """A task as declared."""

    id: str
    func: Callable[..., Any]
    description: str
    dependencies: tuple[str, ...]
    retry: Retry
    timeout_ms: int | None
    trigger: Trigger | None


@dataclass
class WorkflowDef:
    """A workflow as declared."""

    name: str
    description: str
    tasks: list[TaskDef]
    schedules: tuple[Schedule, ...]


class _Registry:
    """The package's declarations, filled in as its modules are imported."""

    def __init__(self) -> None:
        self.workflows: list[WorkflowDef] = []
        self.capabilities = Capabilities()

    def workflow(self, name: str) -> WorkflowDef | None:
        return next((w for w in self.workflows if w.name == name), None)


#: What this package declares.
registry = _Registry()


def capabilities(
    env: Sequence[str] = (),
    dirs: Sequence[tuple[str, bool] | str] = (),
    http_hosts: Sequence[str] = (),
    wall_clock: bool = False,
    random: bool = False,
) -> Capabilities:
    """Declare the package's capabilities (once): ``dirs`` are guest paths,
    or ``(path, writable)``."""
    for name, value in (("env", env), ("dirs", dirs), ("http_hosts", http_hosts)):
        if isinstance(value, str):
            raise BuildError(f"capabilities: {name} is a list, not the string {value!r}")
    pairs = tuple((d, False) if isinstance(d, str) else (str(d[0]), bool(d[1])) for d in dirs)
    for path, _ in pairs:
        if not path.startswith("/"):
            raise BuildError(f"a directory capability is an absolute guest path, not {path!r}")
    registry.capabilities = Capabilities(tuple(env), pairs, tuple(http_hosts), bool(wall_clock), bool(random))
    return registry.capabilities


def task(
    id: str,
    *,
    dependencies: Sequence[str] = (),
    retry: Retry | None = None,
    timeout_ms: int | None = None,
    trigger: Trigger | None = None,
    description: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a function ``f(ctx: Context) -> None`` as a task of the
    workflow class or module it is in. ``description`` defaults to the
    function's docstring."""
    _identifier(id, "task id")
    if isinstance(dependencies, str):
        raise BuildError(f"task '{id}': dependencies must be a list of task ids: [\"a\", \"b\"]")
    if timeout_ms is not None and (not isinstance(timeout_ms, int) or not 1 <= timeout_ms <= _DAY_MS):
        raise BuildError(f"task '{id}': timeout_ms must be between 1 and 86400000 (24 hours)")
    if retry is not None and not isinstance(retry, Retry):
        raise BuildError(f"task '{id}': retry must be a Retry(...)")
    if trigger is not None and not isinstance(trigger, Trigger):
        raise BuildError(f"task '{id}': trigger must be all_of(...), any_of(...), none_of(...) or always()")

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        import inspect

        if inspect.iscoroutinefunction(func):
            raise BuildError(f"task '{id}': tasks are synchronous functions, not async def")
        if hasattr(func, "__culvert_task__"):
            # One function used for several tasks: each gets its own
            # marked wrapper, so that marking one does not rename another.
            import functools

            inner = func.__culvert_task__.func

            @functools.wraps(inner)
            def func(ctx: Any) -> Any:
                return inner(ctx)

        doc = (func.__doc__ or "").strip()
        func.__culvert_task__ = TaskDef(  # type: ignore[attr-defined]
            id=id,
            func=func,
            description=description if description is not None else " ".join(doc.split()),
            dependencies=tuple(dependencies),
            retry=retry or NO_RETRY,
            timeout_ms=timeout_ms,
            trigger=trigger,
        )
        return func

    return mark


def workflow(
    name: str,
    *,
    description: str | None = None,
    schedules: Sequence[Schedule] = (),
) -> Callable[[Any], Any]:
    """Mark a class (or module) whose :func:`task` functions are a workflow's
    tasks, in the order they are defined. ``description`` defaults to the
    docstring."""
    _identifier(name, "workflow name")

    def mark(holder: Any) -> Any:
        tasks = [v.__culvert_task__ for v in vars(holder).values() if hasattr(v, "__culvert_task__")]
        doc = (getattr(holder, "__doc__", None) or "").strip()
        wf = WorkflowDef(
            name=name,
            description=description if description is not None else " ".join(doc.split()),
            tasks=tasks,
            schedules=tuple(schedules),
        )
        _check(wf)
        if registry.workflow(name) is not None:
            raise BuildError(f"duplicate workflow name '{name}'")
        registry.workflows.append(wf)
        return holder

    return mark


def _check(wf: WorkflowDef) -> None:
    """The DAG rules: at least one task, unique ids, known dependencies, no
    cycle, trigger rules naming dependencies only."""
    if not wf.tasks:
        raise BuildError(f"workflow '{wf.name}' has no tasks: mark functions with @task(id=...)")
    ids: set[str] = set()
    for t in wf.tasks:
        if t.id in ids:
            raise BuildError(f"workflow '{wf.name}': duplicate task id '{t.id}'")
        ids.add(t.id)
    for t in wf.tasks:
        for d in t.dependencies:
            if d == t.id:
                raise BuildError(f"workflow '{wf.name}': task '{t.id}' depends on itself")
            if d not in ids:
                raise BuildError(
                    f"workflow '{wf.name}': task '{t.id}' depends on unknown task '{d}' (known: {', '.join(sorted(ids))})"
                )
        for c in t.trigger.conditions if t.trigger else ():
            if c.kind.startswith("task-") and c.key not in t.dependencies:
                raise BuildError(
                    f"workflow '{wf.name}': the trigger rule of task '{t.id}' names '{c.key}', which is not one of its dependencies"
                )
    deps = {t.id: t.dependencies for t in wf.tasks}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = path[path.index(node):] + [node]
            raise BuildError(f"workflow '{wf.name}': dependency cycle {' -> '.join(cycle)}")
        state[node] = 1
        for d in deps[node]:
            visit(d, path + [node])
        state[node] = 2

    for t in wf.tasks:
        visit(t.id, [])
