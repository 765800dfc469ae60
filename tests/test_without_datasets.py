"""A clone without the recorded datasets (no ../shared/datasets, no VIGIL_DATASETS): the tests that need them
are skipped with one line saying where to get them, never errors (``make test`` used to end with 32
errors there). Runs pytest itself on two of those test files with the datasets pointed nowhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_dataset_tests_skip_with_where_to_get_them(tmp_path):
    env = {**os.environ, "VIGIL_DATASETS": str(tmp_path / "no-datasets-here")}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        "tests/test_ingest.py", "tests/sources/test_jaeger.py::test_topology_from_dependencies_and_check"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    summary = out.strip().splitlines()[-1]
    assert "skipped" in summary and "error" not in summary and "failed" not in summary, summary
    reasons = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert reasons and all("VIGIL_DATASETS" in r and "../shared/datasets" in r and "README.md" in r for r in reasons), \
        reasons
