"""The command line end to end, as a user runs it (subprocesses), including bad input."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "nezha-trainticket"


def vigil(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_HOME": str(home)}
    env.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error:"), p.stderr
    return " ".join(lines)


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home")
    p = vigil("import", str(DEMO), "--space", "demo", home=home)
    assert p.returncode == 0, p.stderr
    return home


def test_demo_investigation_names_the_root_cause(demo_home, tmp_path):
    p = vigil("investigate", "--space", "demo", "--latest", "--format", "html", home=demo_home)
    assert p.returncode == 0, p.stderr
    assert "root cause: ts-preserve-service" in " ".join(p.stdout.split())
    report = Path(p.stdout.split("report:")[-1].split()[0])
    html = report.read_text()
    assert "<svg" in html and "ts-preserve-service" in html and "http" not in html.split("<body>")[0]
    inv_id = report.stem
    md = vigil("report", inv_id, "--format", "md", "--out", str(tmp_path / "r.md"), home=demo_home)
    assert md.returncode == 0, md.stderr
    text = (tmp_path / "r.md").read_text()
    assert "## Journal" in text and "queried logs" in text and "## Evidence" in text
    js = vigil("report", inv_id, "--format", "json", "--out", str(tmp_path / "r.json"), home=demo_home)
    data = json.loads((tmp_path / "r.json").read_text())
    assert js.returncode == 0 and data["hypotheses"][0]["resource"] == "ts-preserve-service"
    assert data["investigation"]["status"] in ("concluded", "inconclusive")
    assert any(j["kind"] == "query" and j["rows"] for j in data["journal"])


def test_reimport_without_replace_keeps_data(demo_home):
    p = vigil("import", str(DEMO), "--space", "demo", home=demo_home)
    assert "already holds telemetry" in one_line_error(p)
    p = vigil("spaces", home=demo_home)
    assert p.returncode == 0 and "demo" in p.stdout


def test_missing_folder(tmp_path):
    assert "no such file" in one_line_error(vigil("import", str(tmp_path / "nope"), home=tmp_path / "h"))


def test_unknown_format(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "data.txt").write_text("hello")
    assert "no recording in a known format" in one_line_error(vigil("import", str(tmp_path / "x"), home=tmp_path / "h"))


def test_malformed_csv_stores_nothing(tmp_path):
    day = tmp_path / "bad" / "rca_data" / "2023-01-29"
    (day / "metric").mkdir(parents=True)
    (day / "2023-01-29-fault_list.json").write_text(json.dumps({"08": [{
        "inject_time": "2023-01-29 08:43:04", "inject_timestamp": "0", "inject_pod": "a-5f6585d649-fnmft",
        "inject_type": "return"}]}))
    with gzip.open(day / "metric" / "a-5f6585d649-fnmft_metric.csv.gz", "wb") as fh:
        fh.write(b"\x00\xff garbage \xfe")
    msg = one_line_error(vigil("import", str(tmp_path / "bad"), "--space", "bad", home=tmp_path / "h"))
    assert "cannot read CSV" in msg
    p = vigil("spaces", home=tmp_path / "h")
    assert "bad" not in p.stdout


def test_window_with_no_data_and_bad_time(demo_home):
    msg = one_line_error(vigil("investigate", "--space", "demo", "--at", "2001-01-01T00:00:00Z", home=demo_home))
    assert "window has no data" in msg
    assert "cannot read time" in one_line_error(vigil("investigate", "--space", "demo", "--at", "yesterday-ish",
                                                      home=demo_home))
    assert "no space" in one_line_error(vigil("investigate", "--space", "ghost", "--latest", home=demo_home))
    assert "unknown format" in one_line_error(vigil("investigate", "--space", "demo", "--latest", "--format", "pdf",
                                                    home=demo_home))


def test_bench_prints_tables_and_writes_the_json_contract(tmp_path):
    out = tmp_path / "bench.json"
    p = vigil("bench", str(REPO / "tests" / "fixtures"), "--json", str(out), home=tmp_path / "h")
    assert p.returncode == 0, p.stderr
    assert "| dataset | method | cases | AC@1 |" in p.stdout and "Calibration" in p.stdout
    data = json.loads(out.read_text())
    assert set(data) >= {"results", "peak_rss_mb"} and data["peak_rss_mb"] > 0
    keys = {"dataset", "method", "cases", "ac@1", "ac@3", "ac@5", "avg@5", "fault_kind_accuracy", "empty", "median_s",
            "max_s", "median_cpu_s"}
    assert data["results"] and all(set(r) == keys for r in data["results"])
    assert {r["method"] for r in data["results"]} == {"vigil"}         # peers only when asked for
    for r in data["results"]:
        assert 0 <= r["ac@1"] <= r["ac@3"] <= r["ac@5"] <= 1 and r["cases"] >= 1


def test_bench_alert_offset_moves_the_alerts(tmp_path):
    """An alert a day late sees none of the incident: every answer is inconclusive and none is right."""
    out = tmp_path / "bench.json"
    p = vigil("bench", str(REPO / "tests" / "fixtures"), "--alert-offset", "86400", "--json", str(out),
              home=tmp_path / "h")
    assert p.returncode == 0, p.stderr
    cases = [c for c in json.loads(out.read_text())["cases"] if c["method"] == "vigil"]
    assert cases and all(c["inconclusive"] and not c["hit@1"] for c in cases)
    assert "--alert-offset" in one_line_error(vigil("bench", str(tmp_path), "--alert-offset", "soon", home=tmp_path / "h"))


def test_bench_on_a_folder_without_labels_is_a_clear_error(tmp_path):
    (tmp_path / "x").mkdir()
    assert "no recording" in one_line_error(vigil("bench", str(tmp_path / "x"), home=tmp_path / "h"))


def test_bench_ablations_and_a_reference_run_apart(tmp_path):
    """Every ablation is scored beside Vigil and none is empty; a reference run days before still ranks."""
    out = tmp_path / "bench.json"
    p = vigil("bench", str(REPO / "tests" / "fixtures"), "--ablations", "all", "--reference-gap", "2",
              "--json", str(out), home=tmp_path / "h")
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    methods = {r["method"] for r in data["results"]}
    assert methods == {"vigil", "vigil/metrics-only", "vigil/no-topology", "vigil/no-traces", "vigil/no-logs"}
    assert all(r["empty"] == 0 for r in data["results"]), data["results"]
    assert "unknown ablation 'no-metrics'" in one_line_error(
        vigil("bench", str(REPO / "tests" / "fixtures"), "--ablations", "no-metrics", home=tmp_path / "h"))


def test_bench_runs_split_across_processes_merge_into_one_report(tmp_path):
    fixtures = REPO / "tests" / "fixtures"
    parts = sorted(p for p in fixtures.iterdir() if p.is_dir())
    outs = []
    for i, part in enumerate(parts[:2]):
        outs.append(tmp_path / f"part{i}.json")
        assert vigil("bench", str(part), "--json", str(outs[-1]), home=tmp_path / "h").returncode == 0
    whole = tmp_path / "whole.json"
    p = vigil("bench", *map(str, outs), "--merge", "--json", str(whole), home=tmp_path / "h")
    assert p.returncode == 0, p.stderr
    merged = json.loads(whole.read_text())
    singles = [json.loads(o.read_text()) for o in outs]
    assert sorted((r["dataset"], r["ac@1"], r["cases"]) for r in merged["results"]) == \
        sorted((r["dataset"], r["ac@1"], r["cases"]) for s in singles for r in s["results"])
    assert len(merged["cases"]) == sum(len(s["cases"]) for s in singles)
    assert "not a vigil bench --json file" in one_line_error(
        vigil("bench", str(fixtures), "--merge", home=tmp_path / "h"))
