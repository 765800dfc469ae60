"""End to end with real processes: `vigil serve`; an app instrumented with the OpenTelemetry SDK
exporting traces, logs and metrics over OTLP/HTTP; a real Prometheus scraping the app and evaluating
an alert rule; a real Alertmanager posting the alert to Vigil's webhook. The alert opens an incident,
an investigation runs on the OTLP telemetry, and the root cause appears through the REST API and
the live journal (SSE).

Needs Debian's `prometheus` and `prometheus-alertmanager` (installed by .ci/run)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from e2e.kit import PrometheusStack, ServeProcess, free_port, read_events, start_logged, vigil_cli, wait_for

HERE = Path(__file__).resolve().parent
RULES = """
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
"""


def test_alertmanager_alert_starts_an_investigation_that_finds_the_root_cause(tmp_path):
    home = tmp_path / "vigil"
    assert vigil_cli("space", "create", "shop", "--description", "the e2e shop", home=home).returncode == 0
    p = vigil_cli("token", "create", "--space", "shop", "--role", "operator", "--name", "alertmanager", home=home)
    assert p.returncode == 0, p.stderr
    operator = p.stdout.strip()
    viewer = vigil_cli("token", "create", "--space", "shop", "--role", "viewer", home=home).stdout.strip()

    procs: list[subprocess.Popen] = []
    vigil = ServeProcess(home).start()
    shop_port = free_port()
    stack = PrometheusStack(tmp_path, f"{vigil.url}/v1/spaces/shop/webhooks/alertmanager", operator,
                            [f"127.0.0.1:{shop_port}"], RULES)
    try:
        stack.__enter__()
        # the instrumented app: 5 minutes of history, then live traffic; cart breaks after 20 s
        fault_after = 20.0
        procs.append(start_logged([sys.executable, str(HERE / "shop_app.py"), "--otlp", vigil.url, "--token", operator,
                                   "--prom-port", str(shop_port), "--backfill", "300", "--fault-after", str(fault_after),
                                   "--duration", "240", "--rps", "25"], tmp_path / "shop.log"))

        # Prometheus scrapes the app; the rule fires; Alertmanager posts; an incident and an investigation
        wait_for(stack.scraping, 60, 0.5, "Prometheus scraping the shop")

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
        stack.__exit__(None, None, None)
        vigil.stop()
