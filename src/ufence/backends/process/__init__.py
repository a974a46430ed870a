"""The process backend: a running (or crashed) program's engine state file."""

from ufence.backends.process.backend import ProcessBackend

__all__ = ["ProcessBackend"]
