"""Benchmark harness: run the engine (and, on request, published peers) over every labeled case it can find."""

from vigil.bench.harness import BenchReport, run_bench

__all__ = ["BenchReport", "run_bench"]
