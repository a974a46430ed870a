"""Leak reports for the format tests, built from model objects through the real analysis."""

from __future__ import annotations

import pytest
from synthetic_leaks import synthetic_report

from ufence.analysis.leaks import LeakReport


@pytest.fixture
def report() -> LeakReport:
    return synthetic_report()
