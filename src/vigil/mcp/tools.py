"""What each MCP tool does, independent of the protocol: every function takes the ``Caller`` (whose
token names the one space it may see) and returns a small JSON-able dict. An investigation of
another space is "not found", exactly like one that does not exist, so nothing leaks its existence.
Telemetry goes through ``App.sources`` (the embedded store plus the space's connectors), bounded in
time (a day) and in rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from vigil.errors import InputError, NotFound
from vigil.mcp.advice import causes, mitigation, recommendations
from vigil.mcp.backend import Backend, Caller
from vigil.mcp.shape import MAX_WINDOW_S, bounded, compact, iso, number, parse_time
from vigil.model import Hypothesis, HypothesisState, Investigation, Role, StartingPoint

MAX_SPAN_WINDOW_S = 6 * 3600.0     # spans are filtered here, after the fetch: a shorter window bounds memory
LEVEL_SCAN = 20_000                # log lines scanned when filtering by level


class VigilTools:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def app(self):
        return self.backend.app

    @property
    def svc(self):
        """The application services (``vigil.services``): every read and action goes through them."""
        return self.backend.app.services

    # -- helpers --------------------------------------------------------------------------------
    def _inv(self, caller: Caller, inv_id: str) -> Investigation:
        if not isinstance(inv_id, str) or not inv_id.strip() or len(inv_id) > 80:
            raise InputError("give an investigation id (inv_...)")
        try:
            return self.svc.investigations.get(caller.space, inv_id.strip())
        except NotFound:
            raise NotFound(f"no investigation {inv_id.strip()!r} in this space") from None

    def _window(self, caller: Caller, start: str | None, end: str | None,
                investigation_id: str | None, max_s: float = MAX_WINDOW_S) -> tuple[float, float]:
        """The query window: given, or the investigation's, or the last hour of the space's data."""
        a, b = parse_time(start, "start"), parse_time(end, "end")
        if investigation_id and (a is None or b is None):
            w = self._inv(caller, investigation_id).window
            a = a or w.start
            b = b or w.end
        if a is None or b is None:
            ext = self.svc.telemetry.extent(caller.space)
            last = datetime.fromtimestamp(ext[1] + 1, UTC) if ext else datetime.now(UTC)
            b = b or (a + timedelta(hours=1) if a else last)
            a = a or b - timedelta(hours=1)
        if a >= b:
            raise InputError("the window must start before it ends")
        if (b - a).total_seconds() > max_s:
            raise InputError(f"the window may span at most {max_s / 3600:g} hours; narrow it")
        return a.timestamp(), b.timestamp()

    @staticmethod
    def _list(v: list[str] | str | None, what: str) -> list[str] | None:
        if v is None or v == "" or v == []:
            return None
        items = [v] if isinstance(v, str) else list(v)
        if len(items) > 100 or any(not isinstance(x, str) or len(x) > 300 for x in items):
            raise InputError(f"{what}: at most 100 names of at most 300 characters")
        return items

    @staticmethod
    def _limit(v: int, hi: int, what: str = "limit") -> int:
        if not isinstance(v, int) or v < 1 or v > hi:
            raise InputError(f"{what} must be between 1 and {hi}")
        return v

    def _status(self, inv: Investigation) -> dict[str, Any]:
        t = inv.trigger
        out: dict[str, Any] = {
            "id": inv.id, "status": inv.status.value, "summary": inv.summary, "error": inv.error or None,
            "trigger": {"kind": t.kind.value, "starting_point": t.starting_point.value if t.starting_point else None,
                        "alert": (t.alert.title or t.alert.id) if t.alert else None, "text": t.text or None},
            "window": {"start": iso(inv.window.start), "onset": iso(inv.window.onset), "end": iso(inv.window.end)},
            "created_at": iso(inv.created_at), "started_at": iso(inv.started_at),
            "finished_at": iso(inv.finished_at),
        }
        job = self.backend.job(inv.id)
        if job:
            out["job"] = compact({k: job.get(k) for k in ("status", "attempts", "not_before", "last_error")
                                  if k in job})
        return out

    # -- tools ----------------------------------------------------------------------------------
    def space_overview(self, caller: Caller) -> dict[str, Any]:
        tel = self.svc.telemetry
        space = self.svc.spaces.get(caller.space)
        ext = tel.extent(caller.space)
        alerts = tel.alerts(caller.space)
        invs = self.svc.investigations.list(caller.space, limit=10)
        topo = tel.topology(caller.space)
        return bounded({
            "space": space.id, "description": space.description, "your_role": caller.role.value,
            "can_start_investigations": caller.role.allows(Role.OPERATOR),
            "telemetry": {"rows": tel.counts(caller.space),
                          "from": iso(ext[0]) if ext else None, "to": iso(ext[1]) if ext else None},
            "resources": len(topo.resources), "edges": len(topo.edges),
            "sources": [{"name": r["name"], "kind": r["kind"]} for r in self.svc.sources.list(caller.space)][:50],
            "recent_alerts": [{"id": a.id, "title": a.title, "at": iso(a.at), "resource": a.resource}
                              for a in alerts[-10:][::-1]],
            "recent_investigations": [{"id": i.id, "status": i.status.value, "onset": iso(i.window.onset),
                                       "summary": i.summary} for i in invs],
        })

    def list_investigations(self, caller: Caller, status: str | None = None, limit: int = 20,
                            offset: int = 0) -> dict[str, Any]:
        from vigil.model import InvestigationStatus
        self._limit(limit, 100)
        if not isinstance(offset, int) or offset < 0 or offset > 100_000:
            raise InputError("offset must be between 0 and 100000")
        try:
            st = InvestigationStatus(status) if status else None
        except ValueError:
            raise InputError(f"unknown status {status!r}: one of "
                             f"{', '.join(s.value for s in InvestigationStatus)}") from None
        invs = self.svc.investigations.list(caller.space, st, limit, offset)
        return bounded({"investigations": [{"id": i.id, "status": i.status.value, "onset": iso(i.window.onset),
                                            "created_at": iso(i.created_at), "summary": i.summary} for i in invs],
                        "next_offset": offset + len(invs) if len(invs) == limit else None})

    def start_investigation(self, caller: Caller, starting_point: str = "latest-alarm", at: str | None = None,
                            start: str | None = None, end: str | None = None, text: str = "") -> dict[str, Any]:
        caller.need(Role.OPERATOR)
        try:
            point = StartingPoint(starting_point)
        except ValueError:
            raise InputError(f"unknown starting point {starting_point!r}: one of "
                             f"{', '.join(p.value for p in StartingPoint)}") from None
        if not isinstance(text, str) or len(text) > 2000:
            raise InputError("text: at most 2000 characters")
        t_at, t_start, t_end = parse_time(at, "at"), parse_time(start, "start"), parse_time(end, "end")
        if t_at is None and t_start is None and t_end is None:
            # default: the last hour the space has telemetry for (recorded incidents are in the past)
            ext = self.svc.telemetry.extent(caller.space)
            if ext:
                t_end = min(datetime.fromtimestamp(ext[1] + 1, UTC), datetime.now(UTC))
                t_start = t_end - timedelta(hours=1)
        if point is StartingPoint.FREE_TEXT and t_at is None and t_end is None:
            raise InputError("the free-text starting point needs 'at' (when it started)")
        inv = self.backend.start(caller, point, t_start, t_end, t_at, text)
        out = self._status(self.svc.investigations.get(caller.space, inv.id))
        out["next"] = "poll investigation_status until it is concluded, then call hypotheses"
        return out

    def investigation_status(self, caller: Caller, investigation_id: str) -> dict[str, Any]:
        inv = self._inv(caller, investigation_id)
        out = self._status(inv)
        invs = self.svc.investigations
        out["journal_entries"] = len(invs.journal(caller.space, inv.id))
        hyps = invs.hypotheses(caller.space, inv.id)
        out["top_hypotheses"] = [{"rank": h.rank, "resource": h.resource, "fault_kind": h.fault_kind.value,
                                  "confidence": number(h.confidence), "state": h.state.value} for h in hyps[:3]]
        out["next"] = ("wait a few seconds and ask again" if not inv.status.finished else
                       "call hypotheses for evidence and propagation paths, recommendations for what to do"
                       if hyps else "read investigation_journal to see why it found nothing")
        return bounded(out)

    def investigation_journal(self, caller: Caller, investigation_id: str, after_seq: int = 0,
                              limit: int = 50) -> dict[str, Any]:
        inv = self._inv(caller, investigation_id)
        self._limit(limit, 200)
        if not isinstance(after_seq, int) or after_seq < 0:
            raise InputError("after_seq must be 0 or more")
        entries = self.svc.investigations.journal(caller.space, inv.id, after_seq=after_seq)
        page = entries[:limit]
        return bounded({
            "investigation_id": inv.id, "status": inv.status.value,
            "entries": [{"seq": e.seq, "ts": iso(e.ts), "kind": e.kind.value, "message": compact(e.message),
                         **({"source": e.source} if e.source else {}), **({"query": e.query} if e.query else {}),
                         **({"rows": e.rows} if e.rows is not None else {}),
                         **({"data": compact(e.data, max_list=10, max_str=200)} if e.data else {})} for e in page],
            "has_more": len(entries) > limit,
            "next_after_seq": page[-1].seq if page else after_seq,
        })

    @staticmethod
    def _hyp(h: Hypothesis, evidence: int) -> dict[str, Any]:
        from vigil.model import EvidenceKind
        found = [e for e in h.evidence if e.kind is not EvidenceKind.VIEW]
        views = [e for e in h.evidence if e.kind is EvidenceKind.VIEW]    # what the console draws, saved
        return {"id": h.id, "rank": h.rank, "resource": h.resource, "fault_kind": h.fault_kind.value,
                "confidence": number(h.confidence), "why": h.why, "propagation_path": h.path,
                "state": h.state.value, **({"note": h.note} if h.note else {}),
                "evidence": [{"kind": e.kind.value, "resource": e.resource, "title": compact(e.title),
                              "score": number(e.score), "detail": compact(e.detail, max_list=12, max_str=300)}
                             for e in found[:evidence]],
                "evidence_total": len(found),
                **({"views": [{"view": str(e.detail.get("category", "")), "title": compact(e.title),
                               "detail": compact({k: v for k, v in e.detail.items() if k not in ("category", "family")},
                                                 max_list=12, max_str=300)} for e in views]} if views else {})}

    def hypotheses(self, caller: Caller, investigation_id: str, limit: int = 5,
                   evidence_per_hypothesis: int = 5) -> dict[str, Any]:
        inv = self._inv(caller, investigation_id)
        self._limit(limit, 20)
        self._limit(evidence_per_hypothesis, 20, "evidence_per_hypothesis")
        hyps = self.svc.investigations.hypotheses(caller.space, inv.id)
        return bounded({"investigation_id": inv.id, "status": inv.status.value, "summary": inv.summary,
                        "hypotheses": [self._hyp(h, evidence_per_hypothesis) for h in hyps[:limit]],
                        "total": len(hyps)})

    def recommendations(self, caller: Caller, investigation_id: str, limit: int = 3) -> dict[str, Any]:
        inv = self._inv(caller, investigation_id)
        self._limit(limit, 10)
        invs = self.svc.investigations
        hyps = invs.hypotheses(caller.space, inv.id)
        live = [h for h in hyps if h.state is not HypothesisState.DISCARDED]
        others = []
        for o in invs.list(caller.space, limit=50):
            oh = [h for h in invs.hypotheses(caller.space, o.id)
                  if h.state is not HypothesisState.DISCARDED] if o.id != inv.id else []
            others.append((o, oh[0] if oh else None))
        journal = invs.journal(caller.space, inv.id)
        recs = recommendations(inv, hyps, journal, others)
        named = causes(journal)
        return bounded({
            "investigation_id": inv.id, "status": inv.status.value,
            "derived": "from the ranked hypotheses, their evidence, the journal and the space's other "
                       "investigations; Vigil executes none of it (steps marked mutating need a person)",
            "mitigations": [{"rank": h.rank, "resource": h.resource, "fault_kind": h.fault_kind.value,
                             "confidence": number(h.confidence),
                             **mitigation(h, named.get(h.resource), inv.id).model_dump(mode="json")}
                            for h in live[:limit]],
            "recommendations": [r.model_dump(mode="json") for r in recs],
        })

    # -- respond: the same service the API, the console and Slack call -----------------------------------
    def mitigation(self, caller: Caller, investigation_id: str, limit: int = 3) -> dict[str, Any]:
        inv = self._inv(caller, investigation_id)
        self._limit(limit, 10)
        specs = self.backend.respond.specs(caller.space, inv.id, limit)
        return bounded({"investigation_id": inv.id, "specs": [s.model_dump(mode="json") for s in specs]})

    def ask(self, caller: Caller, investigation_id: str, question: str) -> dict[str, Any]:
        inv = self._inv(caller, investigation_id)
        ans = self.backend.respond.ask(caller.space, inv.id, question, caller.actor, caller.role.allows(Role.OPERATOR))
        return bounded(ans.model_dump(mode="json"))

    def propose_action(self, caller: Caller, investigation_id: str, kind: str, args: dict[str, Any],
                       hypothesis_id: str = "") -> dict[str, Any]:
        caller.need(Role.OPERATOR)
        inv = self._inv(caller, investigation_id)
        a = self.backend.respond.propose(caller.space, inv.id, kind, args, caller.actor, hypothesis_id)
        return bounded({**{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in a.items()},
                        "note": "proposed only: a person approves it in the console, the API or Slack"})

    def postmortem(self, caller: Caller, investigation_id: str) -> dict[str, Any]:
        from vigil.respond import postmortem
        inv = self._inv(caller, investigation_id)
        data = postmortem.gather(self.backend.respond, caller.space, inv.id)
        return bounded({"investigation_id": inv.id, "markdown": postmortem.markdown(data)[:20000]})

    def prevention_backlog(self, caller: Caller, limit: int = 20) -> dict[str, Any]:
        self._limit(limit, 100)
        items = self.backend.respond.backlog(caller.space)
        return bounded({"items": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in i.items()}
                                  for i in items[:limit]], "total": len(items)})

    def topology(self, caller: Caller, resource: str | None = None) -> dict[str, Any]:
        topo = self.svc.telemetry.topology(caller.space)
        edges = topo.edges
        resources = topo.resources
        if resource:
            names = {r.name for r in resources} | {e.src for e in edges} | {e.dst for e in edges}
            if resource not in names:
                raise NotFound(f"no resource {resource!r} in this space's topology")
            edges = [e for e in edges if resource in (e.src, e.dst)]
            keep = {resource} | {e.src for e in edges} | {e.dst for e in edges}
            resources = [r for r in resources if r.name in keep]
        return bounded({
            "resources": [{"name": r.name, "kind": r.kind} for r in resources[:500]],
            "edges": [{"src": e.src, "dst": e.dst, "kind": e.kind.value, "source": e.source.value} for e in edges[:1000]],
            **({"callers": topo.callers(resource), "callees": topo.callees(resource)} if resource else {}),
            "total_resources": len(resources), "total_edges": len(edges),
        })

    # -- telemetry --------------------------------------------------------------------------------
    @staticmethod
    def _meta(df: pd.DataFrame, a: float, b: float) -> dict[str, Any]:
        attrs = getattr(df, "attrs", {}) or {}
        return {"window": {"start": iso(a), "end": iso(b)},
                **({"problems": [str(p)[:300] for p in attrs["problems"][:10]]} if attrs.get("problems") else {}),
                **({"rows_by_source": attrs["rows_by_source"]} if attrs.get("rows_by_source") else {})}

    def query_metrics(self, caller: Caller, start: str | None = None, end: str | None = None,
                      resources: list[str] | None = None, names: list[str] | None = None,
                      investigation_id: str | None = None, raw: bool = False, limit: int = 100) -> dict[str, Any]:
        a, b = self._window(caller, start, end, investigation_id)
        self._limit(limit, 2000)
        df = self.svc.telemetry.metrics(caller.space, a, b, self._list(resources, "resources"),
                                        self._list(names, "names"))
        out = self._meta(df, a, b)
        if raw:
            rows = df.sort_values(["resource", "name", "ts"]).head(limit)
            out.update(columns=["resource", "name", "ts", "value"],
                       rows=[[r, n, iso(t), number(float(v))] for r, n, t, v in rows.itertuples(index=False)],
                       total_rows=len(df), truncated=len(df) > limit)
            return bounded(out)
        series = []
        if len(df):
            df = df.sort_values("ts")
            g = df.groupby(["resource", "name"], sort=True)["value"]
            agg = pd.DataFrame({"points": g.size(), "min": g.min(), "mean": g.mean(), "max": g.max(),
                                "first": g.first(), "last": g.last()})
            ts = df.groupby(["resource", "name"], sort=True)["ts"]
            agg["t_from"], agg["t_to"] = ts.min(), ts.max()
            agg = agg.reset_index()
            for r in agg.head(limit).itertuples(index=False):
                series.append([r.resource, r.name, int(r.points), number(float(r.min)), number(float(r.mean)),
                               number(float(r.max)), number(float(r.first)), number(float(r.last)),
                               iso(float(r.t_from)), iso(float(r.t_to))])
            total = len(agg)
        else:
            total = 0
        out.update(columns=["resource", "name", "points", "min", "mean", "max", "first", "last", "from", "to"],
                   rows=series, total_series=total, total_points=len(df), truncated=total > limit,
                   hint="raw=true with one resource and name gives the points")
        return bounded(out)

    def query_logs(self, caller: Caller, start: str | None = None, end: str | None = None,
                   resources: list[str] | None = None, contains: str | None = None, level: str | None = None,
                   investigation_id: str | None = None, limit: int = 50) -> dict[str, Any]:
        a, b = self._window(caller, start, end, investigation_id)
        self._limit(limit, 500)
        if contains is not None and (not isinstance(contains, str) or len(contains) > 300):
            raise InputError("contains: at most 300 characters")
        fetch = LEVEL_SCAN if level else limit + 1        # one more than asked: is there more?
        df = self.svc.telemetry.logs(caller.space, a, b, self._list(resources, "resources"), contains or None,
                                     fetch)
        scanned = len(df)
        if level:
            df = df[df["level"].fillna("").str.upper().str.startswith(level.strip().upper()[:4])]
        rows = df.head(limit)
        out = self._meta(df, a, b)
        if level and scanned >= LEVEL_SCAN:
            out["note"] = f"only the first {LEVEL_SCAN} lines of the window were scanned for level {level}; narrow it"
        out.update(columns=["resource", "ts", "level", "body", "trace_id"],
                   rows=[[r.resource, iso(float(r.ts)), r.level, compact(str(r.body), max_str=400),
                          r.trace_id or None] for r in rows.itertuples(index=False)],
                   returned=len(rows), truncated=len(df) > limit)
        return bounded(out)

    def query_traces(self, caller: Caller, start: str | None = None, end: str | None = None,
                     resources: list[str] | None = None, operation: str | None = None, errors_only: bool = False,
                     trace_id: str | None = None, investigation_id: str | None = None, raw: bool = False,
                     limit: int = 50) -> dict[str, Any]:
        a, b = self._window(caller, start, end, investigation_id, MAX_SPAN_WINDOW_S)
        self._limit(limit, 1000)
        df = self.svc.telemetry.spans(caller.space, a, b)
        attrs = dict(df.attrs)
        res = self._list(resources, "resources")
        if res:
            df = df[df["resource"].isin(res)]
        if operation:
            df = df[df["operation"].astype(str).str.contains(operation, regex=False)]
        if trace_id:
            df = df[df["trace_id"] == trace_id]
        if errors_only:
            df = df[df["error"].astype(bool)]
        df.attrs = attrs
        out = self._meta(df, a, b)
        if raw or trace_id:
            rows = df.sort_values("start").head(limit)
            out.update(columns=["trace_id", "span_id", "parent_id", "resource", "operation", "start", "duration_ms",
                                "error"],
                       rows=[[r.trace_id, r.span_id, r.parent_id or None, r.resource, compact(str(r.operation), max_str=200),
                              iso(float(r.start)), number(float(r.duration_ms)), bool(r.error)]
                             for r in rows.itertuples(index=False)],
                       total_spans=len(df), truncated=len(df) > limit)
            return bounded(out)
        rows = []
        total = 0
        if len(df):
            g = df.groupby(["resource", "operation"], sort=False)
            agg = g.agg(spans=("duration_ms", "size"), errors=("error", "sum"),
                        p50_ms=("duration_ms", "median"), p95_ms=("duration_ms", lambda s: s.quantile(0.95)),
                        max_ms=("duration_ms", "max")).reset_index().sort_values(["errors", "spans"], ascending=False)
            total = len(agg)
            for r in agg.head(limit).itertuples(index=False):
                rows.append([r.resource, compact(str(r.operation), max_str=200), int(r.spans), int(r.errors),
                             number(float(r.p50_ms)), number(float(r.p95_ms)), number(float(r.max_ms))])
        out.update(columns=["resource", "operation", "spans", "errors", "p50_ms", "p95_ms", "max_ms"], rows=rows,
                   total_operations=total, total_spans=len(df), truncated=total > limit,
                   hint="raw=true (or a trace_id) gives individual spans")
        return bounded(out)
