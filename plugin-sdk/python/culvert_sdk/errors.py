"""How a task fails: :class:`TaskError`, transient (worth another attempt)
or permanent (do not retry)."""

from __future__ import annotations

__all__ = ["TaskError", "BuildError"]


class TaskError(Exception):
    """A task's failure, as the host records it.

    Raise ``TaskError.transient("...")`` for a failure a later attempt may
    not meet (a flaky dependency) and ``TaskError.permanent("...")`` for one
    it will. Any other exception a task raises is a permanent error with
    the exception's type and message.
    """

    TRANSIENT = "transient"
    PERMANENT = "permanent"

    def __init__(self, kind: str, message: str) -> None:
        if kind not in (self.TRANSIENT, self.PERMANENT):
            raise ValueError(f"a TaskError is transient or permanent, not {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message

    @classmethod
    def transient(cls, message: str) -> "TaskError":
        """A failure worth another attempt (the retry policy decides)."""
        return cls(cls.TRANSIENT, message)

    @classmethod
    def permanent(cls, message: str) -> "TaskError":
        """A failure another attempt would meet again: no retry."""
        return cls(cls.PERMANENT, message)

    def __repr__(self) -> str:
        return f"TaskError.{self.kind}({self.message!r})"


class BuildError(Exception):
    """A package definition the host would refuse (an unknown dependency, a
    cycle, a duplicate id, an invalid retry policy...): raised when the
    module is imported, so that the build stops with the reason."""
