"""The context a task reads and writes: a JSON object, with the same rules
as the Rust SDK's ``Context`` (``insert`` refuses to overwrite, ``update``
refuses to create)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import TaskError

__all__ = ["Attempt", "Context", "ContextError"]

_MISSING: Any = object()


class ContextError(TaskError):
    """A context operation that cannot be done (a missing key, a key that
    exists already, a value that is not JSON): a permanent task error."""

    def __init__(self, message: str) -> None:
        super().__init__(TaskError.PERMANENT, message)


@dataclass(frozen=True)
class Attempt:
    """Which attempt of which execution this call is."""

    execution_id: str = ""
    number: int = 1
    max_attempts: int = 1

    @property
    def is_last(self) -> bool:
        """Whether a failure now is final."""
        return self.number >= self.max_attempts


def _check_json(key: str, value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ContextError(f"the value for '{key}' is not JSON: {e}") from None
    return value


class Context:
    """A task's input, changed in place into its output."""

    def __init__(self, data: dict[str, Any] | None = None, attempt: Attempt | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})
        self.attempt: Attempt = attempt or Attempt()

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value at ``key``; ``default`` when absent, or a
        :class:`ContextError` when no default is given."""
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise ContextError(f"the context has no key '{key}'")
        return default

    def set(self, key: str, value: Any) -> None:
        """Write ``key``, whether or not it exists."""
        self._data[key] = _check_json(key, value)

    def insert(self, key: str, value: Any) -> None:
        """Write a new ``key``; a :class:`ContextError` when it exists."""
        if key in self._data:
            raise ContextError(f"the context has '{key}' already (use update or set)")
        self._data[key] = _check_json(key, value)

    def update(self, key: str, value: Any) -> None:
        """Change an existing ``key``; a :class:`ContextError` when absent."""
        if key not in self._data:
            raise ContextError(f"the context has no key '{key}' to update (use insert or set)")
        self._data[key] = _check_json(key, value)

    def remove(self, key: str) -> Any:
        """Remove ``key``: its value, or ``None`` when it was absent."""
        return self._data.pop(key, None)

    def keys(self) -> list[str]:
        """The keys, in order."""
        return list(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def to_dict(self) -> dict[str, Any]:
        """A copy of the data."""
        return dict(self._data)

    def __repr__(self) -> str:
        return f"Context({self._data!r})"
