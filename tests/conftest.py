from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("VIGIL_DATASETS", REPO.parent / "shared" / "datasets"))
PG_URL = os.environ.get("VIGIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


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


@pytest.fixture(scope="session")
def datasets() -> Path:
    return need_datasets()


@pytest.fixture
def vigil_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("VIGIL_HOME", str(home))
    monkeypatch.delenv("VIGIL_DATABASE_URL", raising=False)
    return home


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh state database: a SQLite file, or a private schema on the real PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    schema = f"vigil_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
