"""Investigation orchestration: query the space's source for the window, journal every step, run
the engine, store ranked hypotheses."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd

from vigil.engine import Analysis, Observation, Settings, analyze
from vigil.engine.analyzers.views import attach as attach_views
from vigil.errors import InputError
from vigil.frames import call_edges
from vigil.model import Alert, Investigation, InvestigationStatus, JournalKind, Trigger, TriggerKind, Window
from vigil.respond.cause import conclude as conclude_with_change
from vigil.sources.base import TelemetrySource
from vigil.sources.mcp_tools import run_agent_tools
from vigil.store.state import StateStore

Journal = Callable[..., None]   # journal(kind, message, source=, query=, rows=, data=)

# Extra history queried past the analysis window so a slow (e.g. 5-minute) series still has samples
# after the onset; the engine trims each series to what it needs.
QUERY_TAIL_S = 900.0


def _nojournal(*_a, **_k) -> None:
    return None


def observe(source: TelemetrySource, space: str, onset: float, alert: Alert | None = None,
            settings: Settings | None = None, journal: Journal = _nojournal) -> Observation:
    """Gather what the engine needs from a source. Every query lands in the journal."""
    s = settings or Settings()
    # fault-free windows the source marks, unless they overlap the incident window
    baselines = [(a, b) for a, b in source.baselines(space)
                 if b < onset - s.onset_guard_s or a > onset + s.after_s]
    m_start, end = onset - s.metric_lookback_s, onset + s.after_s + QUERY_TAIL_S
    e_start, e_end = onset - s.event_lookback_s, onset + s.after_s
    windows_m = [(m_start, end)] + [(a, b + 1) for a, b in baselines if b < m_start or a > end]
    windows_e = [(e_start, e_end)] + [(a, b + 1) for a, b in baselines if b < e_start or a > e_end]

    def fetch(kind: str, windows: list[tuple[float, float]], call) -> pd.DataFrame:
        frames = []
        for a, b in windows:
            t0 = time.perf_counter()
            try:
                df = call(a, b)
            except Exception as exc:   # a source that fails leaves the investigation with partial evidence
                journal(JournalKind.WARNING, f"{kind} query failed: {exc}", source=source.name,
                        query=f"{kind} {space} [{_iso(a)}, {_iso(b)})")
                continue
            frames.append(df)
            extra = {"rows_by_source": df.attrs["rows_by_source"]} if df.attrs.get("rows_by_source") else {}
            journal(JournalKind.QUERY, f"queried {kind}: {len(df)} rows", source=source.name,
                    query=f"{kind} space={space} window=[{_iso(a)}, {_iso(b)})", rows=len(df),
                    data={"seconds": round(time.perf_counter() - t0, 4), **extra})
            for problem in df.attrs.get("problems") or []:
                journal(JournalKind.WARNING, f"partial evidence: {problem}", source=source.name,
                        query=f"{kind} {space} [{_iso(a)}, {_iso(b)})")
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else None

    obs = Observation(onset=onset, alert=alert, baselines=baselines, topology=source.topology(space))
    m = fetch("metrics", windows_m, lambda a, b: source.metrics(space, a, b))
    if m is not None:
        obs.metrics = m
    lg = fetch("logs", windows_e, lambda a, b: source.logs(space, a, b))
    if lg is not None:
        obs.logs = lg
    sp = fetch("spans", windows_e, lambda a, b: source.spans(space, a, b))
    if sp is not None:
        obs.spans = sp
    ch = fetch("changes", [(onset - 3600.0, e_end)], lambda a, b: source.changes(space, a, b))
    if ch is not None:
        obs.changes = ch
    journal(JournalKind.QUERY, f"topology: {len(obs.topology.resources)} resources, "
            f"{len(obs.topology.edges)} edges; {len(baselines)} marked baseline window(s)",
            source=source.name, query=f"topology space={space}")
    in_window = (
        (len(obs.metrics) and ((obs.metrics["ts"] >= m_start) & (obs.metrics["ts"] < end)).any())
        or (len(obs.logs) and ((obs.logs["ts"] >= e_start) & (obs.logs["ts"] < e_end)).any())
        or (len(obs.spans) and ((obs.spans["start"] >= e_start) & (obs.spans["start"] < e_end)).any()))
    if not in_window:
        raise InputError(f"no telemetry in space {space!r} around {_iso(onset)}: the window has no data")
    return obs


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Investigator:
    """Runs investigations recorded in the state store against a telemetry source."""

    def __init__(self, state: StateStore, source: TelemetrySource, settings: Settings | None = None,
                 preliminary: bool = False, learn_topology: bool = False) -> None:
        """``preliminary``: publish a quick first ranking (``analyze(quick=True)``) before
        the full analysis, and hand the worker back (see ``run``) when the state says other
        investigations are waiting for their first answer (``state.others_waiting(inv_id)``)."""
        self.state = state
        self.source = source
        self.settings = settings or Settings()
        self.preliminary = preliminary
        self.learn_topology = learn_topology      # keep the space's topology current from its spans

    def start(self, space_id: str, onset: datetime, alert: Alert | None = None, text: str = "") -> Investigation:
        s = self.settings
        window = Window.around(onset, timedelta(seconds=s.metric_lookback_s), timedelta(seconds=s.after_s))
        trigger = Trigger(kind=TriggerKind.ALERT if alert else TriggerKind.MANUAL, alert=alert, text=text)
        return self.state.create_investigation(space_id, trigger, window)

    def _learn_edges(self, inv: Investigation, obs: Observation, journal: Journal) -> None:
        """Service call edges seen in the window's spans that the space's topology lacks are stored
        (OTLP brings spans, not topology), and the step is journaled."""
        learn = getattr(self.source, "learn_edges", None)
        edges = call_edges(obs.spans)
        if learn is None or not edges:
            return
        t0 = time.perf_counter()
        new = learn(inv.space_id, edges)
        if new:
            journal(JournalKind.QUERY, f"topology: learned {len(new)} call edge(s) from spans: "
                    + ", ".join(f"{e.src} -> {e.dst}" for e in new[:10]), source=self.source.name,
                    query=f"topology space={inv.space_id}: call edges of the window's spans", rows=len(new),
                    data={"seconds": round(time.perf_counter() - t0, 4)})

    def run(self, inv: Investigation) -> Analysis | None:
        """Investigate and conclude. Returns None when it handed the worker back after its preliminary
        ranking (the investigation stays running; running it again refines the ranking)."""
        st = self.state
        refining = inv.status is InvestigationStatus.RUNNING

        def journal(kind: JournalKind, message: str, **kw) -> None:
            st.append_journal(inv.id, kind, message, **kw)

        trig = inv.trigger
        if refining:
            journal(JournalKind.NOTE, "refining the preliminary ranking with the full analysis", source="engine")
        else:
            st.set_status(inv.id, InvestigationStatus.RUNNING)
            journal(JournalKind.STARTED, f"investigating space {inv.space_id} around "
                    f"{inv.window.onset:%Y-%m-%d %H:%M:%S}Z" + (f" (alert: {trig.alert.title or trig.alert.id})"
                                                              if trig.alert else ""),
                    data={"window": inv.window.model_dump(mode="json")})
        try:
            t0 = time.perf_counter()
            obs = observe(self.source, inv.space_id, inv.window.onset.timestamp(), trig.alert, self.settings, journal)
            if self.preliminary and not refining:
                first = analyze(obs, self.settings, quick=True)
                st.replace_hypotheses(inv.id, first.hypotheses)
                top = first.hypotheses[0] if first.hypotheses else None
                journal(JournalKind.ANALYSIS, "preliminary ranking (request patterns over fewer traces, no evidence yet)"
                        + (f": {top.resource} ({top.fault_kind.value}) first" if top else ": nothing stands out yet")
                        + "; the full analysis refines it", source="engine",
                        data={"preliminary": True, "seconds": round(time.perf_counter() - t0, 3),
                              "ranking": [[h.resource, h.fault_kind.value, h.confidence] for h in first.hypotheses[:5]]})
            if self.learn_topology and not refining:
                self._learn_edges(inv, obs, journal)
            if self.preliminary and not refining:
                waiting = getattr(st, "others_waiting", None)
                if waiting is not None and waiting(inv.id):
                    journal(JournalKind.NOTE, "other investigations are waiting for a first answer: the full "
                            "analysis continues after theirs", source="engine")
                    return None
            analysis = analyze(obs, self.settings)
            conclude_with_change(analysis, obs, trig)   # steering; a change before the onset named as the cause
            attach_views(analysis.hypotheses, analysis.findings)   # what the console, reports and MCP show
            for analyzer, message, data in analysis.notes:
                journal(JournalKind.ANALYSIS, f"{analyzer}: {message}", source="engine", data=data)
            stored = st.replace_hypotheses(inv.id, analysis.hypotheses)
            analysis.hypotheses = stored
            run_agent_tools(self.source, inv, stored, journal)   # read-only MCP tools, bounded, journaled
            status = InvestigationStatus.INCONCLUSIVE if analysis.inconclusive else InvestigationStatus.CONCLUDED
            journal(JournalKind.CONCLUSION, analysis.summary, source="engine",
                    data={"seconds": round(time.perf_counter() - t0, 3),
                          "ranking": [[h.resource, h.fault_kind.value, h.confidence] for h in stored[:5]]})
            st.set_status(inv.id, status, summary=analysis.summary)
            return analysis
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            journal(JournalKind.ERROR, f"investigation failed: {msg}")
            st.set_status(inv.id, InvestigationStatus.FAILED, error=msg)
            raise
