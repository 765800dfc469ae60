"""CloudWatch connector (boto3): metrics (GetMetricData), logs (FilterLogEvents), alarms in ALARM
state, and topology seeds from CloudFormation stacks and resource tags.

Every AWS call goes through one boto3 session with explicit timeouts and a bounded retry budget.
Credentials come from ``SecretRef``s or, when none are given, boto3's default chain (instance role,
``AWS_*`` environment, shared config). ``endpoint_url`` points every client at one endpoint (a
VPC endpoint, LocalStack, moto); it is checked like any registered URL. Read-only: only Get, List,
Describe and Filter calls are made."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vigil.frames import level_of
from vigil.model import Alert, Edge, EdgeKind, EdgeSource, Resource, Topology
from vigil.sources.connector import Connector, ConnectorConfig, SecretRef, SourceError, empty
from vigil.sources.httpjson import error_code
from vigil.sources.safety import check_url, unsafe_reason, vet_botocore

log = logging.getLogger(__name__)

MAX_QUERIES_PER_CALL = 500          # GetMetricData's limit on MetricDataQueries per request
MAX_SERIES = 2000                   # expanded (ListMetrics) series per metric query, at most
MAX_STACKS = 50
MAX_TAGGED = 5000
_RESOURCE_DIMENSIONS = ("ServiceName", "service", "FunctionName", "ClusterName", "DBInstanceIdentifier",
                        "LoadBalancer", "TargetGroup", "TableName", "QueueName", "InstanceId")


class MetricQuery(BaseModel):
    """One CloudWatch metric, as an engine metric. With ``resource_dimension`` not fixed in
    ``dimensions``, every series carrying that dimension (found with ListMetrics) becomes one resource."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="The engine metric name.")
    namespace: str = Field(min_length=1, max_length=255)
    metric: str = Field(min_length=1, max_length=255)
    dimensions: dict[str, str] = Field(default_factory=dict, max_length=30)
    stat: str = Field(default="Average", max_length=50)
    period: int = Field(default=60, ge=1, le=86400)
    resource_dimension: str | None = Field(default=None, max_length=255)
    resource: str | None = Field(default=None, max_length=300, description="A fixed resource name.")

    @field_validator("period")
    @classmethod
    def _period(cls, v: int) -> int:
        if v not in (1, 5, 10, 30) and v % 60:
            raise ValueError("period must be 1, 5, 10, 30 or a multiple of 60 seconds")
        return v


class LogGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=512)
    resource: str | None = Field(default=None, max_length=300, description=(
        "The service these logs belong to; default: from the group name (last path part) or the stream."))
    resource_from: str = Field(default="group", pattern="^(group|stream)$")


class CloudWatchConfig(ConnectorConfig):
    region: str = Field(min_length=1, max_length=50, pattern=r"^[a-z]{2}(-[a-z]+)+-\d+$")
    endpoint_url: str | None = Field(default=None, max_length=2000)
    allow_link_local: bool = False
    access_key_id: SecretRef | None = None
    secret_access_key: SecretRef | None = None
    session_token: SecretRef | None = None
    max_attempts: int = Field(default=2, ge=1, le=10, description="botocore retries (standard mode).")
    metrics: list[MetricQuery] = Field(default_factory=list, max_length=200)
    log_groups: list[LogGroup] = Field(default_factory=list, max_length=100)
    max_log_events: int = Field(default=10_000, ge=1, le=100_000)
    alarms: bool = True
    stacks: list[str] | None = Field(default=None, max_length=MAX_STACKS, description=(
        "CloudFormation stacks read for topology; default: every active stack (up to 50); [] turns it off."))
    tag_topology: bool = Field(default=True, description="Read resource tags (Resource Groups Tagging API).")
    service_tags: list[str] = Field(default_factory=lambda: [
        "service", "Service", "app", "App", "application", "Application", "app.kubernetes.io/name"],
        max_length=20, description="Tag keys naming a resource's service, first present wins.")
    depends_on_tag: str | None = Field(default=None, max_length=128, description=(
        "A tag listing (comma or space separated) the services this resource's service depends on."))

    @model_validator(mode="after")
    def _endpoint_and_keys(self) -> CloudWatchConfig:
        if self.endpoint_url is not None:
            if not self.endpoint_url.startswith(("http://", "https://")):
                raise ValueError("endpoint_url must start with http:// or https://")
            check_url(self.endpoint_url, allow_link_local=self.allow_link_local)
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither (default chain)")
        return self


def _ms(t: float) -> int:
    return int(t * 1000)


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _short(physical_id: str) -> str:
    """A readable name for a CloudFormation physical id: an ARN's last path part, else the id."""
    if physical_id.startswith("arn:"):
        tail = physical_id.split(":", 5)[-1]
        return re.split(r"[/:]", tail)[-1] or physical_id
    if physical_id.startswith(("http://", "https://")):      # SQS queue URLs
        return physical_id.rstrip("/").rsplit("/", 1)[-1]
    return physical_id


_KIND_OF_TYPE = {
    "AWS::SQS::Queue": "queue", "AWS::SNS::Topic": "queue", "AWS::Kinesis::Stream": "queue",
    "AWS::MSK::Cluster": "queue", "AWS::AmazonMQ::Broker": "queue",
    "AWS::DynamoDB::Table": "database", "AWS::RDS::DBInstance": "database", "AWS::RDS::DBCluster": "database",
    "AWS::ElastiCache::CacheCluster": "database", "AWS::ElastiCache::ReplicationGroup": "database",
    "AWS::DocDB::DBCluster": "database", "AWS::OpenSearchService::Domain": "database",
    "AWS::Lambda::Function": "function", "AWS::ECS::Service": "service", "AWS::AppRunner::Service": "service",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "resource", "AWS::ApiGateway::RestApi": "service",
    "AWS::ApiGatewayV2::Api": "service", "AWS::S3::Bucket": "resource", "AWS::EC2::Instance": "node",
}


def aws_kind(resource_type: str) -> str:
    """The engine's resource kind for a CloudFormation type (queues, databases, functions and services
    are root-cause candidates); the rest (roles, policies, subnets, ...) are ``aws`` and are not."""
    return _KIND_OF_TYPE.get(resource_type, "aws")


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags: ``!Ref X`` -> {"Ref": X}, ``!GetAtt A.B`` -> ..."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def template_dependencies(body: Any) -> list[tuple[str, str]]:
    """(resource, dependency) logical-id pairs of a template: ``DependsOn``, ``Ref`` and ``Fn::GetAtt``
    between resources. These are the dependencies CloudFormation itself orders creation by."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            try:
                body = yaml.load(body, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
            except yaml.YAMLError:
                return []
    resources = body.get("Resources") if isinstance(body, dict) else None
    if not isinstance(resources, dict):
        return []
    ids, out = set(resources), set()

    def refs(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "Ref" and isinstance(v, str):
                    found.add(v)
                elif k == "Fn::GetAtt" and isinstance(v, list) and v and isinstance(v[0], str):
                    found.add(v[0])
                elif k == "Fn::Sub" and isinstance(v, str | list):
                    text = v if isinstance(v, str) else str(v[0])
                    found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                else:
                    found |= refs(v)
        elif isinstance(node, list):
            for v in node:
                found |= refs(v)
        return found

    for lid, spec in resources.items():
        if not isinstance(spec, dict):
            continue
        dep = spec.get("DependsOn") or []
        deps = set([dep] if isinstance(dep, str) else [d for d in dep if isinstance(d, str)])
        deps |= refs(spec.get("Properties") or {})
        out |= {(lid, d) for d in deps if d in ids and d != lid}
    return sorted(out)


class CloudWatchConnector(Connector):
    kind: ClassVar[str] = "cloudwatch"
    Config: ClassVar[type[CloudWatchConfig]] = CloudWatchConfig
    roles: ClassVar[frozenset[str]] = frozenset({"metrics", "logs", "alerts", "topology"})
    config: CloudWatchConfig

    def __init__(self, name: str, config: CloudWatchConfig) -> None:
        super().__init__(name, config)
        self._session = None
        self._clients: dict[str, Any] = {}
        self._where = config.endpoint_url or f"AWS {config.region}"

    # -- AWS plumbing -------------------------------------------------------------------------------
    def _client(self, service: str):
        if service not in self._clients:
            import boto3
            from botocore.config import Config as BotoConfig

            if self._session is None:
                c = self.config
                creds = {}
                if c.access_key_id is not None and c.secret_access_key is not None:
                    creds = {"aws_access_key_id": c.access_key_id.value(),
                             "aws_secret_access_key": c.secret_access_key.value()}
                    if c.session_token is not None:
                        creds["aws_session_token"] = c.session_token.value()
                self._session = boto3.session.Session(region_name=c.region, **creds)
            bc = BotoConfig(connect_timeout=self.config.timeout_s, read_timeout=self.config.timeout_s,
                            retries={"max_attempts": self.config.max_attempts, "mode": "standard"},
                            user_agent_extra="vigil")
            # Every connection the client makes is vetted at connect time and its answers bounded, like every
            # other connector's (safety.vet_botocore: its session's pool manager). The host's own credential
            # fetch (instance role: 169.254.169.254) is botocore's separate client, not affected.
            client = self._session.client(service, endpoint_url=self.config.endpoint_url, config=bc)
            vet_botocore(client, allow_link_local=self.config.allow_link_local)
            self._clients[service] = client
        return self._clients[service]

    def _call(self, service: str, op: str, **kw: Any) -> dict[str, Any]:
        """One AWS API call; any failure is a one-line ``SourceError`` without credentials in it."""
        from botocore import exceptions as bx

        try:
            return getattr(self._client(service), op)(**kw)
        except (bx.ConnectTimeoutError, bx.ReadTimeoutError):
            raise SourceError(f"{service} at {self._where} did not answer {op} within "
                              f"{self.config.timeout_s:g} s") from None
        except bx.EndpointConnectionError:
            raise SourceError(f"cannot reach {service} at {self._where}") from None
        except bx.NoCredentialsError:
            raise SourceError("no AWS credentials: set access_key_id and secret_access_key, or give the "
                              "server an AWS role or environment") from None
        except bx.ClientError as exc:
            # the code (AccessDenied, ThrottlingException...) but never the message: the endpoint may be any
            # service on the host's networks, and its answer does not go back to whoever registered it
            err = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
            status = (exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") \
                if isinstance(exc.response, dict) else None
            code = error_code(err.get("Code")) or "an error"
            raise SourceError(f"{service} at {self._where} refused {op}: {code}"
                              + (f" (HTTP {status})" if isinstance(status, int) else "")) from None
        except bx.BotoCoreError as exc:
            if why := unsafe_reason(exc):
                raise SourceError(f"cannot reach {service} at {self._where}: {why}") from None
            raise SourceError(f"{service} at {self._where} {op} failed ({type(exc).__name__})") from None

    def _pages(self, service: str, op: str, key: str, token_in: str, token_out: str, max_items: int,
               **kw: Any) -> list[Any]:
        out: list[Any] = []
        token = None
        while len(out) < max_items:
            page = self._call(service, op, **kw, **({token_in: token} if token else {}))
            out.extend(page.get(key) or [])
            token = page.get(token_out)
            if not token:
                break
        return out[:max_items]

    # -- metrics ------------------------------------------------------------------------------------
    def _series(self, q: MetricQuery) -> list[tuple[str, list[dict[str, str]]]]:
        """(resource, full dimension list) per series of a query."""
        fixed = [{"Name": k, "Value": v} for k, v in q.dimensions.items()]
        if q.resource_dimension and q.resource_dimension not in q.dimensions:
            # filtered on the fixed dimensions only; the resource dimension's presence is checked here
            found = self._pages("cloudwatch", "list_metrics", "Metrics", "NextToken", "NextToken", MAX_SERIES,
                                Namespace=q.namespace, MetricName=q.metric, **({"Dimensions": fixed} if fixed else {}))
            out, seen = [], set()
            for m in found:
                dims = m.get("Dimensions") or []
                key = tuple(sorted((d["Name"], d["Value"]) for d in dims))
                res = next((d["Value"] for d in dims if d["Name"] == q.resource_dimension), None)
                if res and key not in seen:
                    seen.add(key)
                    out.append((q.resource or res, dims))
            return out
        res = q.resource or q.dimensions.get(q.resource_dimension or "") or next(
            (q.dimensions[d] for d in _RESOURCE_DIMENSIONS if d in q.dimensions), None) or q.namespace
        return [(res, fixed)]

    def metrics(self, start: float, end: float, resources: list[str] | None = None,
                names: list[str] | None = None) -> pd.DataFrame:
        qs = [q for q in self.config.metrics if names is None or q.name in names]
        if not qs or end <= start:
            return empty("metrics")
        queries, meta = [], {}
        for q in qs:
            for res, dims in self._series(q):
                if resources is not None and res not in resources:
                    continue
                qid = f"m{len(queries)}"
                meta[qid] = (res, q.name)
                queries.append({"Id": qid, "ReturnData": True, "MetricStat": {
                    "Metric": {"Namespace": q.namespace, "MetricName": q.metric, "Dimensions": dims},
                    "Period": q.period, "Stat": q.stat}})
        rows: list[pd.DataFrame] = []
        start = start - start % 60                  # whole minutes: the same window gives the same buckets
        for i in range(0, len(queries), MAX_QUERIES_PER_CALL):
            results = self._pages("cloudwatch", "get_metric_data", "MetricDataResults", "NextToken", "NextToken",
                                  1_000_000, MetricDataQueries=queries[i:i + MAX_QUERIES_PER_CALL],
                                  StartTime=_dt(start), EndTime=_dt(end), ScanBy="TimestampAscending")
            for r in results:
                if r.get("Id") not in meta or not r.get("Timestamps"):
                    continue
                res, name = meta[r["Id"]]
                rows.append(pd.DataFrame({"resource": res, "name": name,
                                          "ts": [t.timestamp() for t in r["Timestamps"]],
                                          "value": [float(v) for v in r["Values"]]}))
        if not rows:
            return empty("metrics")
        df = pd.concat(rows, ignore_index=True)
        return df.groupby(["resource", "name", "ts"], as_index=False, sort=True)["value"].mean()

    # -- logs ---------------------------------------------------------------------------------------
    @staticmethod
    def _log_resource(g: LogGroup, stream: str) -> str:
        if g.resource:
            return g.resource
        if g.resource_from == "stream" and stream:
            parts = [p for p in stream.split("/") if p]         # ECS: prefix/container/task-id
            return parts[-2] if len(parts) >= 3 else parts[0]
        return [p for p in g.name.split("/") if p][-1] if g.name.strip("/") else g.name

    def logs(self, start: float, end: float, resources: list[str] | None = None,
             contains: str | None = None, limit: int | None = None) -> pd.DataFrame:
        cap = min(limit or self.config.max_log_events, self.config.max_log_events)
        rows: list[dict[str, Any]] = []
        for g in self.config.log_groups:
            if resources is not None and g.resource and g.resource not in resources:
                continue
            kw: dict[str, Any] = {"logGroupName": g.name, "startTime": _ms(start), "endTime": _ms(end),
                                  "limit": min(cap, 10_000)}
            if contains:
                kw["filterPattern"] = json.dumps(contains)      # a quoted term: exact substring match
            for e in self._pages("logs", "filter_log_events", "events", "nextToken", "nextToken", cap, **kw):
                res = self._log_resource(g, e.get("logStreamName", ""))
                if resources is not None and res not in resources:
                    continue
                body = str(e.get("message", "")).rstrip("\n")
                rows.append({"resource": res, "ts": e.get("timestamp", 0) / 1000.0, "level": level_of(body),
                             "body": body, "trace_id": "", "span_id": ""})
        if not rows:
            return empty("logs")
        return pd.DataFrame(rows).sort_values("ts", kind="stable").head(cap).reset_index(drop=True)

    # -- alarms -------------------------------------------------------------------------------------
    def alerts(self) -> list[Alert]:
        if not self.config.alarms:
            return []
        out = []
        for kind in ("MetricAlarms", "CompositeAlarms"):
            alarms = self._pages("cloudwatch", "describe_alarms", kind, "NextToken", "NextToken", 1000,
                                 StateValue="ALARM", AlarmTypes=[kind[:-1]])
            for a in alarms:
                dims = {d["Name"]: d["Value"] for d in a.get("Dimensions") or []}
                resource = next((dims[d] for d in _RESOURCE_DIMENSIONS if d in dims), None) or \
                    next(iter(dims.values()), None)
                labels = {"alertname": a.get("AlarmName", ""), **({"namespace": a["Namespace"]}
                                                                    if a.get("Namespace") else {}), **dims}
                at = a.get("StateUpdatedTimestamp") or a.get("StateTransitionedTimestamp")
                if at is None:
                    continue
                fp = f"cloudwatch:{a.get('AlarmArn') or a.get('AlarmName')}"
                title = a.get("AlarmDescription") or a.get("AlarmName") or "alarm"
                out.append(Alert(id=fp, title=" ".join(str(title).split())[:500], at=at.astimezone(UTC),
                                 resource=resource, metric=a.get("MetricName"), labels=labels, fingerprint=fp))
        return sorted(out, key=lambda x: x.at)

    # -- topology -----------------------------------------------------------------------------------
    def _stack_names(self) -> list[str]:
        if self.config.stacks is not None:
            return list(self.config.stacks)
        active = ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE",
                  "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"]
        stacks = self._pages("cloudformation", "list_stacks", "StackSummaries", "NextToken", "NextToken",
                             MAX_STACKS, StackStatusFilter=active)
        return [s["StackName"] for s in stacks]

    def _stack_topology(self, stack: str) -> Topology:
        got = self._call("cloudformation", "describe_stack_resources", StackName=stack)
        resources, edges, names = [], [], {}
        for r in got.get("StackResources") or []:
            lid, phys = r.get("LogicalResourceId", ""), r.get("PhysicalResourceId") or r.get("LogicalResourceId", "")
            name = _short(phys)
            names[lid] = name
            rtype = r.get("ResourceType", "")
            resources.append(Resource(name=name, kind=aws_kind(rtype), attributes={
                "stack": stack, "logical_id": lid, "physical_id": phys, "type": rtype}))
            edges.append(Edge(src=name, dst=f"stack:{stack}", kind=EdgeKind.DEPLOYED_BY,
                              source=EdgeSource.CLOUDFORMATION))
        resources.append(Resource(name=f"stack:{stack}", kind="AWS::CloudFormation::Stack"))
        body = self._call("cloudformation", "get_template", StackName=stack,
                          TemplateStage="Processed").get("TemplateBody")
        for src, dst in template_dependencies(body):
            if src in names and dst in names:
                edges.append(Edge(src=names[src], dst=names[dst], kind=EdgeKind.DEPENDS_ON,
                                  source=EdgeSource.CLOUDFORMATION))
        return Topology(resources=resources, edges=edges)

    def _tag_topology(self) -> Topology:
        # one unfiltered listing (GetResources ANDs tag filters, and keys are case-sensitive)
        found = self._pages("resourcegroupstaggingapi", "get_resources", "ResourceTagMappingList",
                            "PaginationToken", "PaginationToken", MAX_TAGGED, ResourcesPerPage=100)
        services: dict[str, Resource] = {}
        edges: list[Edge] = []
        seen: set[str] = set()
        for m in found:
            arn = m.get("ResourceARN", "")
            if arn in seen:
                continue
            seen.add(arn)
            tags = {t["Key"]: t["Value"] for t in m.get("Tags") or []}
            svc = next((tags[k] for k in self.config.service_tags if tags.get(k)), None)
            if not svc:
                continue
            r = services.setdefault(svc, Resource(name=svc, kind="service", attributes={}))
            n = sum(1 for k in r.attributes if k.startswith("arn"))
            if n < 20:
                r.attributes[f"arn{n or ''}"] = arn
            if self.config.depends_on_tag and tags.get(self.config.depends_on_tag):
                for dep in re.split(r"[,\s]+", tags[self.config.depends_on_tag].strip()):
                    if dep and dep != svc:
                        edges.append(Edge(src=svc, dst=dep, kind=EdgeKind.DEPENDS_ON, source=EdgeSource.TAGS))
        return Topology(resources=list(services.values()), edges=edges)

    def topology(self) -> Topology:
        parts = [self._stack_topology(s) for s in self._stack_names()]
        if self.config.tag_topology:
            parts.append(self._tag_topology())
        return Topology().merged(*parts)

    def check(self) -> str:
        self._call("cloudwatch", "describe_alarms", MaxRecords=1)
        c = self.config
        return (f"CloudWatch in {c.region} at {self._where} answered; {len(c.metrics)} metric queries, "
                f"{len(c.log_groups)} log groups configured")

    def close(self) -> None:
        for cl in self._clients.values():
            try:
                cl.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._clients.clear()
