from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from recordings import DATASETS, REPO, datasets_missing, need_datasets  # noqa: F401 - re-exported
from sqlalchemy import create_engine, text

PG_URL = os.environ.get("VIGIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# `make test` runs the suite on several pytest-xdist workers (`-n N --dist loadfile`). Every test file is one
# unit of work (its module-scoped servers and imports are made once, on one worker); GROUPS joins files that
# share a session-scoped fixture (the console's server and browser), SPLIT lets the tests of a file with no
# shared fixture run on different workers. Files that take longest start first, so that none of them is left
# running alone at the end; the order changes nothing else (every test makes its own VIGIL_HOME, ports,
# PostgreSQL schema and broker queue). A plain `pytest` run (no -n) runs the same order in one process.
GROUPS = {"tests/browser/": "tests/browser/"}
SPLIT = ("tests/test_server_crash.py",)
SLOW_FIRST = ("tests/test_server_crash.py", "tests/e2e/test_e2e_respond.py", "tests/e2e/test_e2e_prometheus.py",
              "tests/scaleout/test_e2e_scaleout.py", "tests/test_cli.py", "tests/test_server_cli.py",
              "tests/sources/test_mcp_client.py", "tests/browser/", "tests/test_mcp_server.py",
              "tests/test_engine.py", "tests/test_engine_v2.py", "tests/test_ingest.py", "tests/test_space_config.py",
              "tests/test_server_queue.py", "tests/test_bench_peers.py")


def _unit(nodeid: str) -> str:
    """The unit of work a test belongs to: its file, its group, or (SPLIT) the test itself."""
    path = nodeid.split("::", 1)[0]
    if path.startswith(SPLIT):
        return nodeid
    return next((g for p, g in GROUPS.items() if path.startswith(p)), path)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        rel = Path(str(item.path)).resolve().relative_to(REPO).as_posix()
        return next((i for i, p in enumerate(SLOW_FIRST) if rel.startswith(p)), len(SLOW_FIRST))

    items.sort(key=rank)                              # stable: within a file, the file's own order


try:        # pytest-xdist's loadgroup cannot be used: on pytest >= 9.2 it silently stops grouping (its #1386)
    from xdist.scheduler import LoadScopeScheduling
except ImportError:                                   # pragma: no cover - xdist is in the test extra
    LoadScopeScheduling = None

if LoadScopeScheduling is not None:
    class _ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    def pytest_xdist_make_scheduler(config, log):
        if config.getvalue("dist") == "loadfile":
            return _ByUnit(config, log)
        return None


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
