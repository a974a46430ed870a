"""The one error type of the harness: printed as one line, exit status 2."""


class BenchError(Exception):
    """A setup or usage problem (missing tool, bad --only name, server would not start)."""
