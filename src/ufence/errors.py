"""The one exception type the CLI turns into a one-line error and exit code."""

from __future__ import annotations


class UfenceError(Exception):
    """A user-facing failure: bad input, missing target, refused change.

    The CLI prints ``ufence: <message>`` and exits with ``exit_code``; no
    traceback. Raise it with a message that says what to do, not an errno.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(UfenceError):
    """Bad command-line arguments (exit code 2, as argparse)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


class TargetGone(UfenceError):
    """The target process exited (or its state file vanished) mid-read."""
