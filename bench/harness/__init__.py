"""bench/run: the benchmark harness (workloads x configurations, alternated)."""
