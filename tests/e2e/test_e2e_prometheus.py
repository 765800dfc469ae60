"""End to end with real processes: `vigil serve`; an app instrumented with the OpenTelemetry SDK
exporting traces, logs and metrics over OTLP/HTTP; a real Prometheus scraping the app and evaluating
an alert rule; a real Alertmanager posting the alert to Vigil's webhook. The alert opens an incident,
an investigation runs on the OTLP telemetry, and the root cause appears through the REST API and
the live journal (SSE).

Needs Debian's `prometheus` and `prometheus-alertmanager` (installed by .ci/run)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from e2e.kit import ServeProcess, free_port, read_events, vigil_cli, wait_for

HERE = Path(__file__).resolve().parent
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _need_binaries() -> None:
    if not PROMETHEUS or not ALERTMANAGER:
        pytest.fail("prometheus and prometheus-alertmanager are not installed "
                    "(apt-get install prometheus prometheus-alertmanager; .ci/run does it)")


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _ready(url: str, timeout: float = 60.0) -> None:
    def up():
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, timeout, 0.2, url)


def test_alertmanager_alert_starts_an_investigation_that_finds_the_root_cause(tmp_path):
    _need_binaries()
    home = tmp_path / "vigil"
    assert vigil_cli("space", "create", "shop", "--description", "the e2e shop", home=home).returncode == 0
    p = vigil_cli("token", "create", "--space", "shop", "--role", "operator", "--name", "alertmanager", home=home)
    assert p.returncode == 0, p.stderr
    operator = p.stdout.strip()
    viewer = vigil_cli("token", "create", "--space", "shop", "--role", "viewer", home=home).stdout.strip()

    procs: list[subprocess.Popen] = []
    vigil = ServeProcess(home).start()
    try:
        shop_port, am_port, prom_port = free_port(), free_port(), free_port()
        # the instrumented app: 5 minutes of history, then live traffic; cart breaks after 20 s
        fault_after = 20.0
        procs.append(_start([sys.executable, str(HERE / "shop_app.py"), "--otlp", vigil.url, "--token", operator,
                             "--prom-port", str(shop_port), "--backfill", "300", "--fault-after", str(fault_after),
                             "--duration", "240", "--rps", "25"], tmp_path / "shop.log"))
        (tmp_path / "am.yml").write_text(f"""
route:
  receiver: vigil
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
  - name: vigil
    webhook_configs:
      - url: {vigil.url}/v1/spaces/shop/webhooks/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {operator}
""")
        procs.append(_start([ALERTMANAGER, f"--config.file={tmp_path / 'am.yml'}",
                             f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                             "--cluster.listen-address="], tmp_path / "alertmanager.log"))
        (tmp_path / "rules.yml").write_text("""
groups:
  - name: shop
    rules:
      - alert: CheckoutErrors
        expr: shop_error_ratio{service="frontend"} > 0.2
        for: 2s
        labels:
          severity: page
          service: frontend
        annotations:
          summary: Checkout requests are failing
""")
        (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
rule_files: ["{tmp_path / 'rules.yml'}"]
scrape_configs:
  - job_name: shop
    static_configs:
      - targets: ["127.0.0.1:{shop_port}"]
""")
        procs.append(_start([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log"))
        _ready(f"http://127.0.0.1:{am_port}/-/ready")
        _ready(f"http://127.0.0.1:{prom_port}/-/ready")

        # Prometheus scrapes the app; the rule fires; Alertmanager posts; an incident and an investigation
        def target_up():
            r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": "up{job='shop'}"}).json()
            return any(x["value"][1] == "1" for x in r["data"]["result"])
        wait_for(target_up, 60, 0.5, "Prometheus scraping the shop")

        client = vigil.client(viewer)
        incidents = wait_for(lambda: client.get("/v1/spaces/shop/incidents").json(), 120, 0.5,
                             "an incident from Alertmanager")
        inc = client.get(f"/v1/spaces/shop/incidents/{incidents[0]['id']}").json()
        assert inc["source"] == "alertmanager" and inc["status"] == "open"
        assert inc["alerts"][0]["labels"]["alertname"] == "CheckoutErrors"
        assert inc["alerts"][0]["resource"] == "frontend"
        inv_id = inc["investigation_id"]
        assert inv_id

        # the live journal, read to its end
        events = read_events(client, f"/v1/spaces/shop/investigations/{inv_id}/events", timeout=120)
        kinds = [e[0] for e in events]
        assert kinds[-1] == "end" and "hypotheses" in kinds and "status" in kinds
        journal = [e[2] for e in events if e[0] == "journal"]
        # the alert arrived seconds after its onset: the investigation waited for telemetry from after it
        assert journal[0]["kind"] == "note" and "waiting until" in journal[0]["message"], journal[0]
        started = next(j for j in journal if j["kind"] == "started")
        assert "Checkout requests are failing" in started["message"], started
        assert datetime.fromisoformat(started["ts"]) >= datetime.fromisoformat(inc["alerts"][0]["starts_at"]) + \
            timedelta(seconds=15)
        assert [int(e[1]) for e in events if e[0] == "journal"] == list(range(1, len(journal) + 1))
        queried = {j["query"].split()[0]: j["rows"] for j in journal if j["kind"] == "query" and j["rows"]}
        assert queried.get("spans", 0) > 1000 and queried.get("logs", 0) > 1000, queried   # arrived over OTLP
        assert queried.get("metrics", 0) > 0, queried
        hyps = [e[2] for e in events if e[0] == "hypotheses"][-1]
        assert hyps[0]["resource"] == "cart", [(h["resource"], h["fault_kind"], h["confidence"]) for h in hyps]
        assert events[-1][2]["status"] in ("concluded", "inconclusive")   # the engine's call; cart is first
        assert any(j["kind"] == "conclusion" and "cart" in j["message"] for j in journal)

        # and the same through the REST API
        inv = client.get(f"/v1/spaces/shop/investigations/{inv_id}").json()
        assert inv["status"] in ("concluded", "inconclusive") and inv["trigger"]["kind"] == "alert"
        assert inv["trigger"]["alert"]["title"] == "Checkout requests are failing"
        assert inv["job"]["status"] == "done" and inv["job"]["attempts"] == 1
        top = client.get(f"/v1/spaces/shop/investigations/{inv_id}/hypotheses").json()[0]
        assert top["resource"] == "cart" and top["evidence"]
        report = client.get(f"/v1/spaces/shop/investigations/{inv_id}/report", params={"format": "md"})
        assert report.status_code == 200 and "cart" in report.text
        # one alert storm, one investigation
        time.sleep(6)   # Alertmanager re-sends the group after group_interval
        assert len(client.get("/v1/spaces/shop/investigations").json()) == 1
        metrics = httpx.get(vigil.url + "/metrics").text
        assert 'vigil_webhook_requests_total{kind="alertmanager"}' in metrics
        assert 'vigil_otlp_items_total{signal="traces"}' in metrics
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        vigil.stop()
