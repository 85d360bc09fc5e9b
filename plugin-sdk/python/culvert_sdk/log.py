"""Logging to the host's ``log`` import: each record is stored with the
attempt and shown by ``culvert executions logs``. Outside a component (a
native test) records go to :data:`captured` and to stderr."""

from __future__ import annotations

import sys
from typing import Any, Callable

__all__ = ["trace", "debug", "info", "warn", "error", "log", "captured", "LEVELS"]

LEVELS = ("trace", "debug", "info", "warn", "error")

#: Records logged outside a component: ``(level, message, fields)``.
captured: list[tuple[str, str, list[tuple[str, str]]]] = []

# Set by culvert_sdk.component inside a component: the host's log import.
_sink: Callable[[str, str, list[tuple[str, str]]], None] | None = None


def log(level: str, message: str, **fields: Any) -> None:
    """Emit a record at ``level`` (one of :data:`LEVELS`); ``fields`` become
    its key-value fields, as text."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LEVELS)}")
    pairs = [(str(k), str(v)) for k, v in fields.items()]
    if _sink is not None:
        _sink(level, str(message), pairs)
    else:
        captured.append((level, str(message), pairs))
        print(f"[{level}] {message} {pairs if pairs else ''}".rstrip(), file=sys.stderr)


def trace(message: str, **fields: Any) -> None:
    """A trace record."""
    log("trace", message, **fields)


def debug(message: str, **fields: Any) -> None:
    """A debug record."""
    log("debug", message, **fields)


def info(message: str, **fields: Any) -> None:
    """An info record."""
    log("info", message, **fields)


def warn(message: str, **fields: Any) -> None:
    """A warning record."""
    log("warn", message, **fields)


def error(message: str, **fields: Any) -> None:
    """An error record."""
    log("error", message, **fields)
