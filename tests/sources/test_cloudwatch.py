"""CloudWatchConnector against moto's standalone server (the real AWS wire protocols: CloudWatch query
API, CloudWatch Logs JSON API, CloudFormation, Resource Groups Tagging API), holding a slice of a real
recorded incident: Nezha's Online Boutique, 2022-08-22, CPU contention injected into currencyservice at
05:18:09 UTC. CloudWatch Logs refuses events older than 14 days (moto too), so the recording is shifted
to end an hour ago by a whole number of minutes; values and relative times are unchanged."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from sources.promkit import free_port, load_frame
from vigil.errors import InputError
from vigil.ingest.nezha import _logs
from vigil.model import EdgeKind, EdgeSource
from vigil.sources.cloudwatch import template_dependencies
from vigil.sources.connector import SourceError, build, validate_config

DAY = "nezha/rca_data/2022-08-22"
INJECT = 1661145489.0                      # 05:18:09 UTC, cpu_contention on currencyservice
START, END = INJECT - 8 * 60, INJECT + 4 * 60
SERVICES = ["currencyservice", "frontend", "checkoutservice"]
SHIFT = (int(time.time() - 3600 - END) // 60) * 60
NS = "Nezha/OnlineBoutique"
REGION = "eu-west-1"

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  OrdersDLQ:
    Type: AWS::SQS::Queue
    Properties: {QueueName: orders-dlq}
  OrdersQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: orders
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt OrdersDLQ.Arn
        maxReceiveCount: 3
  OrdersTopic:
    Type: AWS::SNS::Topic
    DependsOn: OrdersQueue
    Properties: {TopicName: orders-events}
"""


@pytest.fixture(scope="module")
def aws(datasets):
    """moto's server with the recorded metrics, logs, alarms, a stack and tags in it."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    kw = {"endpoint_url": url, "region_name": REGION, "aws_access_key_id": "AKIDTEST",
          "aws_secret_access_key": "not-a-real-secret"}
    frame = load_frame(datasets / DAY)
    frame = frame[(frame.ts >= START) & (frame.ts <= END) & frame.resource.isin(SERVICES)
                  & frame.name.isin(["CpuUsageRate(%)", "PodServerLatencyP95(s)"])].copy()
    frame["ts"] += SHIFT
    cw = boto3.client("cloudwatch", **kw)
    for (res, name), s in frame.groupby(["resource", "name"]):
        cw.put_metric_data(Namespace=NS, MetricData=[{
            "MetricName": name.split("(")[0], "Value": float(v), "Timestamp": float(t),
            "Dimensions": [{"Name": "Cluster", "Value": "nezha"}, {"Name": "ServiceName", "Value": res}]}
            for t, v in zip(s.ts, s.value, strict=True)])
    logs = _logs(datasets / DAY / "log", [])
    logs = logs[logs.resource.isin(["currencyservice", "frontend"])].sort_values("ts")
    logs = logs.groupby("resource").head(40).copy()
    logs["ts"] += SHIFT
    cwl = boto3.client("logs", **kw)
    for res, s in logs.groupby("resource"):
        cwl.create_log_group(logGroupName=f"/ecs/{res}")
        cwl.create_log_stream(logGroupName=f"/ecs/{res}", logStreamName=f"ecs/{res}/5f1c0a9e3b7d4c2a")
        cwl.put_log_events(logGroupName=f"/ecs/{res}", logStreamName=f"ecs/{res}/5f1c0a9e3b7d4c2a", logEvents=[
            {"timestamp": int(t * 1000), "message": b} for t, b in zip(s.ts, s.body, strict=True)])
    for name, state, svc in (("currency-cpu-high", "ALARM", "currencyservice"), ("frontend-cpu-high", "OK", "frontend")):
        cw.put_metric_alarm(AlarmName=name, AlarmDescription=f"{svc} CPU above 80 %", Namespace=NS,
                            MetricName="CpuUsageRate", Statistic="Average", Period=60, EvaluationPeriods=1,
                            Threshold=80.0, ComparisonOperator="GreaterThanThreshold",
                            Dimensions=[{"Name": "Cluster", "Value": "nezha"}, {"Name": "ServiceName", "Value": svc}])
        cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(StackName="orders", TemplateBody=TEMPLATE)
    sqs, sns = boto3.client("sqs", **kw), boto3.client("sns", **kw)
    sqs.tag_queue(QueueUrl=sqs.get_queue_url(QueueName="orders")["QueueUrl"],
                  Tags={"service": "checkoutservice", "depends-on": "paymentservice, currencyservice"})
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":orders-events"))
    sns.tag_resource(ResourceArn=topic, Tags=[{"Key": "App", "Value": "emailservice"}])
    yield {"url": url, "frame": frame, "logs": logs}
    server.stop()


@pytest.fixture
def conn(aws, monkeypatch):
    monkeypatch.setenv("CW_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("CW_SECRET", "not-a-real-secret")
    c = build("cw", "cloudwatch", {
        "region": REGION, "endpoint_url": aws["url"], "timeout_s": 5,
        "access_key_id": {"env": "CW_KEY_ID"}, "secret_access_key": {"env": "CW_SECRET"},
        "metrics": [
            {"name": "CpuUsageRate(%)", "namespace": NS, "metric": "CpuUsageRate", "dimensions": {"Cluster": "nezha"},
             "resource_dimension": "ServiceName"},
            {"name": "PodServerLatencyP95(s)", "namespace": NS, "metric": "PodServerLatencyP95",
             "dimensions": {"Cluster": "nezha"}, "resource_dimension": "ServiceName"},
            {"name": "frontend_cpu_max", "namespace": NS, "metric": "CpuUsageRate", "stat": "Maximum",
             "dimensions": {"Cluster": "nezha", "ServiceName": "frontend"}}],
        "log_groups": [{"name": "/ecs/currencyservice"}, {"name": "/ecs/frontend", "resource_from": "stream"}],
        "depends_on_tag": "depends-on"})
    yield c
    c.close()


def test_metrics_come_back_per_service_with_the_recorded_values(conn, aws):
    df = conn.metrics(START + SHIFT, END + SHIFT)
    assert set(df["resource"]) == set(SERVICES)
    assert set(df["name"]) == {"CpuUsageRate(%)", "PodServerLatencyP95(s)", "frontend_cpu_max"}
    assert set(df[df.name == "frontend_cpu_max"]["resource"]) == {"frontend"}     # fixed dimensions
    frame = aws["frame"]
    for (res, name), got in df.groupby(["resource", "name"]):
        raw = frame[(frame.resource == res) & (frame.name == name.replace("frontend_cpu_max", "CpuUsageRate(%)"))]
        expect = {t - t % 60: v for t, v in zip(raw.ts, raw.value, strict=True)}    # one sample per minute bucket
        assert dict(zip(got.ts, got.value, strict=True)) == pytest.approx(expect), (res, name)
    lat = df[(df.resource == "currencyservice") & (df.name == "PodServerLatencyP95(s)")]
    before = lat[lat.ts < INJECT + SHIFT - 60]["value"].median()
    after = lat[lat.ts > INJECT + SHIFT]["value"].max()
    assert after > 10 * before, (before, after)                  # the recorded contention is visible
    only = conn.metrics(START + SHIFT, END + SHIFT, resources=["frontend"], names=["CpuUsageRate(%)"])
    assert set(only.resource) == {"frontend"} and set(only.name) == {"CpuUsageRate(%)"} and len(only) == 12


def test_logs_come_back_with_resource_level_and_filter(conn, aws):
    df = conn.logs(START + SHIFT - 3600, END + SHIFT + 3600)
    assert set(df["resource"]) == {"currencyservice", "frontend"}       # from the group name and the stream
    assert len(df) == len(aws["logs"]) == 80
    want = sorted(zip((aws["logs"].ts * 1000).astype("int64"), aws["logs"].body, strict=True))   # ms, as put
    assert sorted(zip((df.ts * 1000).round().astype("int64"), df.body, strict=True)) == want
    assert set(df["level"]) <= {"INFO", "WARN", "ERROR", "DEBUG", ""} and (df["level"] != "").any()
    needle = aws["logs"].body.iloc[0].split("SpanID: ")[-1][:16] if "SpanID: " in aws["logs"].body.iloc[0] else \
        aws["logs"].body.iloc[0][:20]
    hit = conn.logs(START + SHIFT - 3600, END + SHIFT + 3600, contains=needle)
    assert 0 < len(hit) < len(df) and all(needle in b for b in hit.body)
    assert len(conn.logs(START + SHIFT - 3600, END + SHIFT + 3600, limit=5)) == 5
    assert set(conn.logs(START + SHIFT - 3600, END + SHIFT + 3600, resources=["frontend"]).resource) == {"frontend"}


def test_alarms_in_alarm_state_are_alerts(conn):
    alerts = conn.alerts()
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert a.resource == "currencyservice" and a.metric == "CpuUsageRate"
    assert a.title == "currencyservice CPU above 80 %" and a.labels["alertname"] == "currency-cpu-high"
    assert a.labels["namespace"] == NS and a.fingerprint.startswith("cloudwatch:arn:aws:cloudwatch:")
    assert abs(a.at.timestamp() - time.time()) < 600


def test_topology_from_the_stack_and_the_tags(conn):
    topo = conn.topology()
    names = {r.name: r for r in topo.resources}
    assert {"orders", "orders-dlq", "orders-events", "stack:orders"} <= set(names)
    assert names["orders"].kind == "queue" and names["orders"].attributes["logical_id"] == "OrdersQueue"
    assert names["orders"].attributes["type"] == "AWS::SQS::Queue" and names["orders-events"].kind == "queue"
    edges = {(e.src, e.dst, e.kind, e.source) for e in topo.edges}
    cfn = EdgeSource.CLOUDFORMATION
    assert ("orders", "orders-dlq", EdgeKind.DEPENDS_ON, cfn) in edges          # !GetAtt in RedrivePolicy
    assert ("orders-events", "orders", EdgeKind.DEPENDS_ON, cfn) in edges       # DependsOn
    assert ("orders", "stack:orders", EdgeKind.DEPLOYED_BY, cfn) in edges
    assert names["checkoutservice"].kind == "service" and names["checkoutservice"].attributes["arn"].endswith(":orders")
    assert names["emailservice"].attributes["arn"].endswith(":orders-events")     # the `App` tag
    assert ("checkoutservice", "paymentservice", EdgeKind.DEPENDS_ON, EdgeSource.TAGS) in edges
    assert ("checkoutservice", "currencyservice", EdgeKind.DEPENDS_ON, EdgeSource.TAGS) in edges
    assert topo.callees("checkoutservice") == ["currencyservice", "paymentservice"]


def test_check_and_template_parsing(conn):
    line = conn.check()
    assert line.startswith(f"CloudWatch in {REGION} at http://127.0.0.1:") and "3 metric queries" in line
    body = {"Resources": {"A": {"Type": "x", "Properties": {"Arn": {"Fn::Sub": "${B.Arn}/x"}}}, "B": {"Type": "y"},
                          "C": {"Type": "z", "DependsOn": ["A", "Missing"], "Properties": {"P": {"Ref": "AWS::Region"}}}}}
    assert template_dependencies(json.dumps(body)) == [("A", "B"), ("C", "A")]
    assert template_dependencies("not: [valid") == [] and template_dependencies(None) == []


def test_a_bad_endpoint_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("CW_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("CW_SECRET", "not-a-real-secret")
    c = build("down", "cloudwatch", {"region": REGION, "endpoint_url": f"http://127.0.0.1:{free_port()}",
                                     "timeout_s": 1, "max_attempts": 1,
                                     "access_key_id": {"env": "CW_KEY_ID"}, "secret_access_key": {"env": "CW_SECRET"},
                                     "metrics": [{"name": "cpu", "namespace": NS, "metric": "CpuUsageRate"}],
                                     "log_groups": [{"name": "/ecs/x"}]})
    for call in (c.check, lambda: c.metrics(START, END), lambda: c.logs(START, END), c.alerts, c.topology):
        t0 = time.monotonic()
        with pytest.raises(SourceError) as ei:
            call()
        msg = str(ei.value)
        assert msg.startswith("cannot reach ") and "127.0.0.1" in msg, msg
        assert "\n" not in msg and "not-a-real-secret" not in msg
        assert time.monotonic() - t0 < 10


def test_aws_refusals_and_bad_config_are_one_line_errors(aws, monkeypatch):
    monkeypatch.setenv("CW_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("CW_SECRET", "not-a-real-secret")
    c = build("cw", "cloudwatch", {"region": REGION, "endpoint_url": aws["url"], "stacks": ["no-such-stack"],
                                   "access_key_id": {"env": "CW_KEY_ID"}, "secret_access_key": {"env": "CW_SECRET"},
                                   "log_groups": [{"name": "/ecs/missing"}]})
    # the AWS error code, never its message (the endpoint may be any service on the host's networks)
    with pytest.raises(SourceError, match=r"^logs at \S+ refused filter_log_events: ResourceNotFoundException "
                                          r"\(HTTP 400\)$"):
        c.logs(START, END)
    with pytest.raises(SourceError, match=r"^cloudformation at \S+ refused describe_stack_resources: "
                                          r"ValidationError \(HTTP 400\)$"):
        c.topology()
    monkeypatch.delenv("CW_SECRET")
    with pytest.raises(SourceError, match="CW_SECRET is not set"):
        c.close() or build("cw", "cloudwatch", {"region": REGION, "endpoint_url": aws["url"],
                                                "access_key_id": {"env": "CW_KEY_ID"},
                                                "secret_access_key": {"env": "CW_SECRET"}}).check()
    with pytest.raises(InputError, match="link-local"):
        validate_config("cloudwatch", {"region": REGION, "endpoint_url": "http://169.254.169.254"})
    with pytest.raises(InputError, match="both access_key_id and secret_access_key"):
        validate_config("cloudwatch", {"region": REGION, "access_key_id": {"env": "X"}})
    with pytest.raises(InputError, match="period"):
        validate_config("cloudwatch", {"region": REGION, "metrics": [
            {"name": "x", "namespace": "n", "metric": "m", "period": 45}]})
