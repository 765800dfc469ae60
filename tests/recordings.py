"""Where the recorded datasets are, for the tests (``VIGIL_DATASETS``, default ``../shared/datasets`` next to
the clone), and the one-line skip when they are not there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("VIGIL_DATASETS", REPO.parent / "shared" / "datasets"))
NEEDED = ("nezha/rca_data/2023-01-29", "nezha/rca_data/2022-08-22", "petshop/dataset/low_traffic")


def datasets_missing() -> str | None:
    """Why the tests on the recorded datasets cannot run here (one line), or None when they can."""
    missing = [d for d in NEEDED if not (DATASETS / d).is_dir()]
    if not missing:
        return None
    return (f"the recorded datasets are not at {DATASETS} (missing {missing[0]}): set VIGIL_DATASETS or put them "
            "at ../shared/datasets; README.md, 'Recorded datasets', says where the public recordings come from")


def need_datasets() -> Path:
    """The datasets folder, or the test is skipped (never an error) with a line saying where to get it."""
    why = datasets_missing()
    if why:
        pytest.skip(why)
    return DATASETS
