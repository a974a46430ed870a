"""The workloads; each module defines WORKLOAD (a workloads.base.Workload)."""

from __future__ import annotations

from harness.workloads.base import Workload
from harness.workloads.hackbench import WORKLOAD as HACKBENCH
from harness.workloads.micro import WORKLOAD as MICRO
from harness.workloads.redis import WORKLOAD as REDIS
from harness.workloads.sysbench import WORKLOAD as SYSBENCH

ALL: list[Workload] = [MICRO, HACKBENCH, REDIS, SYSBENCH]
