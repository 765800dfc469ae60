"""OTLP/HTTP ingestion: decode ``Export*ServiceRequest`` messages (the official opentelemetry-proto
types; binary protobuf or OTLP/JSON, optionally gzip) into the telemetry store's frames.

Mapping (one resource per ``service.name`` unless a space's OTLP source names another attribute):
- spans: trace/span/parent ids as lowercase hex, name as operation, start (s), duration (ms),
  error when the status code is ERROR.
- log records: time (or observed time, or receive time), severity text (or the name of the severity
  number's range), body as text (truncated at 8 KiB), trace/span ids.
- metrics: one series per metric name and attribute set, ``name{k=v,...}``. Gauges and non-monotonic
  sums as they are; monotonic sums become per-second rates ``name.rate`` (delta points directly,
  cumulative points against the previous point of the same series, so a series' first cumulative
  point yields nothing); histograms give ``name.mean`` and ``name.count.rate`` the same way;
  summaries give ``name.mean`` and ``name.pNN`` per quantile.
Items that break the protocol's rules (ids of the wrong length, no time) are rejected one by one and
reported back in ``partial_success`` as the specification asks; the rest is stored."""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from vigil.errors import InputError
from vigil.frames import FRAME_COLUMNS
from vigil.model import Resource, Topology
from vigil.store.telemetry import TelemetryStore

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
SIGNALS = ("traces", "logs", "metrics")
_REQUEST = {"traces": trace_service_pb2.ExportTraceServiceRequest,
            "logs": logs_service_pb2.ExportLogsServiceRequest,
            "metrics": metrics_service_pb2.ExportMetricsServiceRequest}
_RESPONSE = {"traces": trace_service_pb2.ExportTraceServiceResponse,
             "logs": logs_service_pb2.ExportLogsServiceResponse,
             "metrics": metrics_service_pb2.ExportMetricsServiceResponse}
_REJECTED_FIELD = {"traces": "rejected_spans", "logs": "rejected_log_records", "metrics": "rejected_data_points"}
_ID_KEYS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
_SEVERITY = ["", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
MAX_BODY_CHARS = 8192
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA


class OtlpError(InputError):
    """A request the server cannot use at all (400), or an encoding it does not speak (415)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct in (PROTOBUF, JSON):
        return ct
    raise OtlpError(f"unsupported Content-Type {ct or '(none)'!r}: send {PROTOBUF} or {JSON}", 415)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc != "gzip":
        raise OtlpError(f"unsupported Content-Encoding {enc!r}: send gzip or none", 415)
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error:
        raise OtlpError("the body is not valid gzip") from None
    if len(out) > limit:
        raise OtlpError(f"the body is larger than {limit} bytes once decompressed", 413)
    if not d.eof:
        raise OtlpError("the gzip body is truncated")
    return out


def _ids_to_base64(node) -> None:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping expects base64."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, dict):
            for k, v in n.items():
                if k in _ID_KEYS and isinstance(v, str):
                    try:
                        n[k] = base64.b64encode(bytes.fromhex(v)).decode()
                    except ValueError:
                        raise OtlpError(f"{k} {v[:40]!r} is not hex") from None
                elif isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(n, list):
            stack.extend(x for x in n if isinstance(x, dict | list))


def parse(signal: str, body: bytes, ctype: str) -> Message:
    req = _REQUEST[signal]()
    if ctype == PROTOBUF:
        try:
            req.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError):
            raise OtlpError(f"the body is not a valid OTLP protobuf {req.DESCRIPTOR.name}") from None
        return req
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise OtlpError("the body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise OtlpError(f"the body must be a JSON object ({req.DESCRIPTOR.name})")
    _ids_to_base64(obj)
    try:
        json_format.ParseDict(obj, req, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0][:200] if str(exc) else "invalid"
        raise OtlpError(f"not a valid OTLP/JSON {req.DESCRIPTOR.name}: {msg}") from None
    return req


def response(signal: str, ctype: str, rejected: int, message: str) -> bytes:
    resp = _RESPONSE[signal]()
    if rejected:
        setattr(resp.partial_success, _REJECTED_FIELD[signal], rejected)
        resp.partial_success.error_message = message
    if ctype == PROTOBUF:
        return resp.SerializeToString()
    return json_format.MessageToJson(resp, indent=None).encode()


def status_body(ctype: str, code: int, message: str) -> bytes:
    """A google.rpc.Status (the OTLP error body), encoded like the request."""
    if ctype == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    msg = message.encode()
    out = bytearray(b"\x08" + _varint(code))
    out += b"\x12" + _varint(len(msg)) + msg
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


# -- decoding ------------------------------------------------------------------------------------
def _anystr(v) -> str:
    kind = v.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return v.string_value
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return "[" + ", ".join(_anystr(x) for x in v.array_value.values) + "]"
    if kind == "kvlist_value":
        return "{" + ", ".join(f"{kv.key}={_anystr(kv.value)}" for kv in v.kvlist_value.values) + "}"
    return str(getattr(v, kind))


def _resource(attrs, key: str) -> tuple[str, dict[str, str]]:
    name = ""
    for kv in attrs:
        if kv.key == key:
            name = _anystr(kv.value)
            break
    if not name:
        for kv in attrs:
            if kv.key == "service.name":
                name = _anystr(kv.value)
                break
    return (name or "unknown_service")[:300], {}


def _attr_suffix(attrs) -> str:
    if not attrs:
        return ""
    parts = sorted(f"{kv.key}={_anystr(kv.value)}" for kv in attrs)
    return ("{" + ",".join(parts) + "}")[:300]


@dataclass
class Decoded:
    frame: pd.DataFrame
    rejected: int = 0
    reason: str = ""
    resources: dict[str, dict[str, str]] = field(default_factory=dict)


def decode_spans(req, resource_key: str = "service.name") -> Decoded:
    tid, sid, pid, res, op, start, dur, err = [], [], [], [], [], [], [], []
    rejected, reason, resources = 0, "", {}
    for rs in req.resource_spans:
        svc, _ = _resource(rs.resource.attributes, resource_key)
        resources.setdefault(svc, {})
        for ss in rs.scope_spans:
            for sp in ss.spans:
                t, s = sp.trace_id, sp.span_id
                t0, t1 = sp.start_time_unix_nano, sp.end_time_unix_nano
                if len(t) != 16 or len(s) != 8 or not t0 or t1 < t0:
                    rejected += 1
                    reason = "spans need a 16-byte trace_id, an 8-byte span_id and start <= end time"
                    continue
                tid.append(t.hex())
                sid.append(s.hex())
                p = sp.parent_span_id
                pid.append(p.hex() if len(p) == 8 else "")
                res.append(svc)
                op.append(sp.name[:300])
                start.append(t0 / 1e9)
                dur.append((t1 - t0) / 1e6)
                err.append(sp.status.code == 2)
    df = pd.DataFrame({"trace_id": tid, "span_id": sid, "parent_id": pid, "resource": res, "operation": op,
                       "start": start, "duration_ms": dur, "error": err}, columns=FRAME_COLUMNS["spans"])
    return Decoded(df, rejected, reason, resources)


def decode_logs(req, resource_key: str = "service.name", now: float | None = None) -> Decoded:
    now = now if now is not None else time.time()
    res, ts, level, body, tid, sid = [], [], [], [], [], []
    rejected, reason, resources = 0, "", {}
    for rl in req.resource_logs:
        svc, _ = _resource(rl.resource.attributes, resource_key)
        resources.setdefault(svc, {})
        for sl in rl.scope_logs:
            for lr in sl.log_records:
                t, s = lr.trace_id, lr.span_id
                if (t and len(t) != 16) or (s and len(s) != 8):
                    rejected += 1
                    reason = "log records' trace_id must be 16 bytes and span_id 8 bytes"
                    continue
                t_ns = lr.time_unix_nano or lr.observed_time_unix_nano
                res.append(svc)
                ts.append(t_ns / 1e9 if t_ns else now)
                sev = lr.severity_text
                if not sev and lr.severity_number:
                    sev = _SEVERITY[min((lr.severity_number - 1) // 4 + 1, 6)]
                level.append(sev[:20])
                b = lr.body
                text = b.string_value if b.WhichOneof("value") == "string_value" else _anystr(b)
                body.append(text[:MAX_BODY_CHARS])
                tid.append(t.hex() if t else "")
                sid.append(s.hex() if s else "")
    df = pd.DataFrame({"resource": res, "ts": ts, "level": level, "body": body, "trace_id": tid, "span_id": sid},
                      columns=FRAME_COLUMNS["logs"])
    return Decoded(df, rejected, reason, resources)


class CumulativeState:
    """Previous point of each cumulative series (per space), to turn counters into rates."""

    def __init__(self, max_series: int = 200_000) -> None:
        self._last: dict[tuple, tuple[int, int, float, float]] = {}
        self._lock = threading.Lock()
        self.max_series = max_series

    def delta(self, key: tuple, start_ns: int, t_ns: int, value: float, count: float = 0.0):
        """(seconds, value increase, count increase) since the previous point of the series, or None."""
        with self._lock:
            prev = self._last.get(key)
            if len(self._last) >= self.max_series and prev is None:
                self._last.pop(next(iter(self._last)))
            self._last[key] = (start_ns, t_ns, value, count)
        if prev is None or prev[0] != start_ns or t_ns <= prev[1] or value < prev[2] or count < prev[3]:
            return None
        return (t_ns - prev[1]) / 1e9, value - prev[2], count - prev[3]


def _num(p) -> float:
    return p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)


def decode_metrics(req, space: str, state: CumulativeState, resource_key: str = "service.name") -> Decoded:
    res, names, ts, vals = [], [], [], []
    rejected, reason, resources = 0, "", {}

    def emit(r: str, name: str, t_ns: int, v: float) -> None:
        if math.isfinite(v):
            res.append(r)
            names.append(name[:400])
            ts.append(t_ns / 1e9)
            vals.append(v)

    for rm in req.resource_metrics:
        svc, _ = _resource(rm.resource.attributes, resource_key)
        resources.setdefault(svc, {})
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                points: Iterable = getattr(m, kind).data_points if kind else ()
                for p in points:
                    if not p.time_unix_nano:
                        rejected += 1
                        reason = "data points need a time_unix_nano"
                        continue
                    name = m.name + _attr_suffix(p.attributes)
                    t = p.time_unix_nano
                    if kind == "gauge" or (kind == "sum" and not m.sum.is_monotonic):
                        emit(svc, name, t, _num(p))
                    elif kind == "sum":
                        rate_name = m.name + ".rate" + _attr_suffix(p.attributes)
                        if m.sum.aggregation_temporality == DELTA:
                            if p.start_time_unix_nano and t > p.start_time_unix_nano:
                                emit(svc, rate_name, t, _num(p) / ((t - p.start_time_unix_nano) / 1e9))
                        else:
                            d = state.delta((space, svc, name), p.start_time_unix_nano, t, _num(p))
                            if d and d[0] > 0:
                                emit(svc, rate_name, t, d[1] / d[0])
                    elif kind in ("histogram", "exponential_histogram"):
                        suffix = _attr_suffix(p.attributes)
                        temporality = getattr(m, kind).aggregation_temporality
                        total = p.sum if p.HasField("sum") else math.nan
                        if temporality == DELTA:
                            secs = (t - p.start_time_unix_nano) / 1e9 if p.start_time_unix_nano else 0.0
                            dsum, dcount = total, float(p.count)
                        else:
                            d = state.delta((space, svc, name), p.start_time_unix_nano, t,
                                            0.0 if math.isnan(total) else total, float(p.count))
                            if d is None:
                                continue
                            secs, dsum, dcount = d
                        if dcount > 0 and not math.isnan(dsum):
                            emit(svc, m.name + ".mean" + suffix, t, dsum / dcount)
                        if secs > 0:
                            emit(svc, m.name + ".count.rate" + suffix, t, dcount / secs)
                    elif kind == "summary":
                        suffix = _attr_suffix(p.attributes)
                        d = state.delta((space, svc, name), p.start_time_unix_nano, t, p.sum, float(p.count))
                        if d and d[2] > 0:
                            emit(svc, m.name + ".mean" + suffix, t, d[1] / d[2])
                        for q in p.quantile_values:
                            emit(svc, f"{m.name}.p{q.quantile * 100:g}{suffix}", t, q.value)
    df = pd.DataFrame({"resource": res, "name": names, "ts": ts, "value": vals}, columns=FRAME_COLUMNS["metrics"])
    return Decoded(df, rejected, reason, resources)


class OtlpIngest:
    """Stores decoded OTLP requests in the space's embedded telemetry (one transaction per request)."""

    def __init__(self, telemetry: TelemetryStore) -> None:
        self.telemetry = telemetry
        self.cumulative = CumulativeState()
        self._known: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def _new_resources(self, space: str, names: Iterable[str]) -> list[str]:
        with self._lock:
            known = self._known.get(space)
            if known is None:
                known = {r.name for r in self.telemetry.topology(space).resources}
                self._known[space] = known
            new = [n for n in names if n not in known]
            known.update(new)
        return new

    def forget(self, space: str) -> None:
        with self._lock:
            self._known.pop(space, None)

    def decode(self, signal: str, req, space: str, resource_key: str) -> Decoded:
        if signal == "traces":
            return decode_spans(req, resource_key)
        if signal == "logs":
            return decode_logs(req, resource_key)
        return decode_metrics(req, space, self.cumulative, resource_key)

    def store(self, signal: str, space: str, dec: Decoded) -> int:
        new = self._new_resources(space, dec.resources)
        if dec.frame.empty and not new:
            return 0
        try:
            with self.telemetry.transaction() as w:
                n = getattr(w, {"traces": "spans", "logs": "logs", "metrics": "metrics"}[signal])(space, dec.frame)
                if new:
                    w.topology(space, Topology(resources=[Resource(name=r, kind="service") for r in new]))
        except BaseException:
            self.forget(space)      # the resources were not written after all
            raise
        return n
