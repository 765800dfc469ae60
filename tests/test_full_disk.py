"""VIGIL_HOME on a full disk (a real 2 MiB tmpfs; needs root to mount, skipped otherwise): the server keeps
answering, every write it cannot make is a one-line 503 with Retry-After (senders retry), never a 500 nor a
dropped connection; nothing refused is stored, everything acknowledged is; once space is freed it goes on."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from e2e.kit import live_server

from vigil.model import Role

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from server_bench import PB, log_bodies  # noqa: E402


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a 2 MiB tmpfs needs root (mount -t tmpfs -o size=2m)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _alert(fp: str) -> dict:
    return {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "Disk"},
                                                           "startsAt": "2026-01-01T00:00:00Z", "fingerprint": fp}]}


def test_a_full_disk_is_a_503_with_retry_after_and_nothing_acknowledged_is_lost(small_disk):
    with live_server(small_disk / "home", workers=1) as live:
        live.space("full")
        op = live.token("full", Role.OPERATOR)
        logs = log_bodies(4, 2000, random.Random(5))
        answers = []
        with live.client(op) as c:          # one keep-alive connection: a refused write must not drop it
            for i in range(60):
                r = c.post("/v1/logs", content=logs[i % 4], headers={"Content-Type": PB})
                answers.append(r.status_code)
                if r.status_code != 200:
                    assert r.status_code == 503 and r.headers["retry-after"] and "disk is full" in r.json()["error"]
                if answers[-3:] == [503] * 3:
                    break
            assert 200 in answers and answers[-3:] == [503] * 3, answers
            acked, refused = set(), set()
            for i in range(10):
                r = c.post("/v1/spaces/full/webhooks/alertmanager", json=_alert(f"f{i}"))
                assert r.status_code in (202, 503), r.text
                (acked if r.status_code == 202 else refused).add(f"alertmanager:f{i}")
                if r.status_code == 503:
                    assert r.headers["retry-after"] and "\n" not in r.json()["error"]
            assert refused, "the disk was not full for the alerts"
            assert c.get("/healthz").status_code == 200
            stored = {a["fingerprint"] for inc in c.get("/v1/spaces/full/incidents").json()
                      for a in c.get(f"/v1/spaces/full/incidents/{inc['id']}").json()["alerts"]}
            assert stored == acked
            # space freed: the refused deliveries, sent again, are taken; telemetry too
            subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
            for fp in sorted(refused):
                r = c.post("/v1/spaces/full/webhooks/alertmanager", json=_alert(fp.split(":")[1]))
                assert r.status_code == 202, r.text
            assert c.post("/v1/logs", content=logs[0], headers={"Content-Type": PB}).status_code == 200
            stored = {a["fingerprint"] for inc in c.get("/v1/spaces/full/incidents").json()
                      for a in c.get(f"/v1/spaces/full/incidents/{inc['id']}").json()["alerts"]}
            assert stored == acked | refused
        assert shutil.disk_usage(small_disk).free > 0
