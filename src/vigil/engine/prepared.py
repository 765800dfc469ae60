"""The prepared observation: everything analyzers share, worked out once per run.

``Prepared`` wraps an ``Observation`` (what the sources gave) with the settings, and offers lazily
(each part is computed the first time an analyzer asks, then kept):

- the references of any series: a window marked fault-free, wherever it lies in time (a separate
  reference run, the same hour yesterday, a window an operator marked), when it holds enough samples of
  the series, and the recent past before the onset;
- node metrics with their roles, and per-edge latency series (from edge resources or from series that
  name their peer);
- deduplicated spans, each joined to its parent span (which service called which, client vs server time);
- the call graph (topology plus the calls spans show);
- one Drain template miner and log levels for every log line.
"""

from __future__ import annotations

import copy
import re
from functools import cached_property

import networkx as nx
import numpy as np
import pandas as pd

from vigil.engine import roles
from vigil.engine.observation import Observation
from vigil.engine.settings import Settings
from vigil.engine.stats import median
from vigil.frames import call_edges, python_strings
from vigil.model import EdgeKind, FaultKind

SIGNALS = ("metrics", "logs", "spans", "changes", "topology")
_SIDE_WORD = re.compile(r"[-_:. ]?(?:client|server)", re.I)   # "latency:client-p50" and "latency:server-p50" pair up


def series_step(ts: np.ndarray) -> float:
    """The typical sampling step of a series (60 s when it cannot tell)."""
    if len(ts) < 2:
        return 60.0
    d = np.diff(np.sort(ts))
    d = d[d > 0]
    return median(d) if len(d) else 60.0


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """String columns as plain Python objects: the analyzers' string work is faster on them than on
    pandas' Arrow-backed strings."""
    cols = {c: object for c in df.columns if pd.api.types.is_string_dtype(df[c].dtype) and df[c].dtype != object}
    return df.astype(cols) if cols else df


def in_windows(ts: np.ndarray, windows) -> np.ndarray:
    """Which of the times ``ts`` lie inside any of the ``(start, end)`` windows (ends included)."""
    mask = np.zeros(len(ts), dtype=bool)
    for a, b in windows:
        mask |= (ts >= a) & (ts <= b)
    return mask


class Prepared:
    def __init__(self, obs: Observation, settings: Settings | None = None, quick: bool = False):
        self.obs = obs
        self.settings = settings or Settings()
        self.quick = quick
        self.onset = float(obs.onset)
        self.alert = obs.alert
        self.topology = obs.topology
        self.marked = [(float(a), float(b)) for a, b in obs.baselines]
        self.focus = obs.focus
        self.kinds = {r.name: r.kind for r in obs.topology.resources}
        self.changes = obs.changes

    def focused(self, resources) -> Prepared:
        """The same prepared observation (sharing everything worked out so far), describing only
        ``resources``: what evidence-only analyzers look at."""
        q = copy.copy(self)
        q.focus = frozenset(resources)
        return q

    # -- what is there -------------------------------------------------------------------------
    @cached_property
    def available(self) -> dict[str, bool]:
        """Which signals the observation holds."""
        return {"metrics": len(self.obs.metrics) > 0, "logs": len(self.obs.logs) > 0,
                "spans": len(self.obs.spans) > 0, "changes": len(self.obs.changes) > 0,
                "topology": any(e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON) for e in self.topology.edges)}

    def candidate(self, resource: str) -> bool:
        return self.kinds.get(resource, "") in self.settings.candidate_kinds

    # -- references ----------------------------------------------------------------------------
    def marked_mask(self, ts: np.ndarray) -> np.ndarray:
        return in_windows(ts, self.marked)

    def references(self, ts, lookback_s: float, guard_s: float = 0.0, min_points: int | None = None,
                   min_recent: int = 3) -> list[tuple[np.ndarray, str]]:
        """Every reference a series has, as (boolean mask of its samples, where from): the samples inside
        windows marked fault-free (wherever they lie in time) when there are at least ``min_points`` of
        them (or at least two, ``min_recent``, when the recent past has too few: a short fault-free run
        recorded apart is then the only reference), and the recent past ``[onset - lookback_s, onset - guard_s)`` when it holds at least
        ``min_recent``. The guard (a late alert's fault may have begun before it) is dropped when it would
        leave too few samples."""
        ts = np.asarray(ts, dtype=float)
        need = self.settings.min_reference_points if min_points is None else min_points
        out = []
        recent = (ts >= self.onset - lookback_s) & (ts < self.onset - guard_s)
        if guard_s > 0 and recent.sum() < min_recent:
            recent = (ts >= self.onset - lookback_s) & (ts < self.onset)
        has_recent = recent.sum() >= min_recent
        if self.marked:
            marked = self.marked_mask(ts)
            # a short fault-free run is still the only reference when nothing precedes the onset
            if marked.sum() >= need or (not has_recent and marked.sum() >= max(min_recent, 2)):
                out.append((marked, "marked"))
        if has_recent:
            out.append((recent, "recent"))
        return out

    def reference(self, ts, lookback_s: float, guard_s: float = 0.0, min_points: int | None = None,
                  min_recent: int = 3) -> tuple[np.ndarray, str]:
        """One reference: the marked fault-free samples when there are enough, else the recent past."""
        refs = self.references(ts, lookback_s, guard_s, min_points, min_recent)
        if refs:
            return refs[0]
        ts = np.asarray(ts, dtype=float)
        return (ts >= self.onset - lookback_s) & (ts < self.onset), "recent"

    # -- metrics -------------------------------------------------------------------------------
    @cached_property
    def _metric_parts(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        m = self.obs.metrics
        empty_edges = pd.DataFrame(columns=["src", "dst", "side", "name", "ts", "value"])
        if m.empty:
            return m, empty_edges
        res = m["resource"].to_numpy(object)
        names = m["name"].to_numpy(object)
        known = frozenset(str(r) for r in pd.unique(res))
        is_edge_res = pd.Series(res).map({r: self.kinds.get(r) == "edge" for r in known}).to_numpy(bool)
        peers = {n: roles.peer(str(n), known) for n in pd.unique(names)}
        has_peer = np.array([peers[n] is not None for n in names], dtype=bool) if peers else np.zeros(len(m), bool)
        frames = []
        if is_edge_res.any():
            attrs = {r.name: r.attributes for r in self.topology.resources if r.kind == "edge"}
            em = m[is_edge_res]
            side = em["name"].map({n: "client" if "client" in n else "server" if "server" in n else ""
                                   for n in em["name"].unique()})
            frames.append(pd.DataFrame({
                "src": em["resource"].map({r: a.get("src", "") for r, a in attrs.items()}),
                "dst": em["resource"].map({r: a.get("dst", "") for r, a in attrs.items()}),
                "side": side, "name": em["name"].map({n: _SIDE_WORD.sub("", n) for n in em["name"].unique()}),
                "ts": em["ts"], "value": em["value"]}))
        node_peer = has_peer & ~is_edge_res
        if node_peer.any():
            pm = m[node_peer]
            info = [peers[n] for n in pm["name"].to_numpy(object)]
            own = pm["resource"].to_numpy(object)
            frames.append(pd.DataFrame({
                "src": [p[0] if p[1] == "caller" else o for p, o in zip(info, own, strict=True)],
                "dst": [o if p[1] == "caller" else p[0] for p, o in zip(info, own, strict=True)],
                "side": "client", "name": [p[2] for p in info], "ts": pm["ts"].to_numpy(), "value": pm["value"].to_numpy()}))
        edges = pd.concat(frames, ignore_index=True) if frames else empty_edges
        if len(edges):
            edges = edges[(edges["side"] != "") & (edges["src"] != "") & (edges["dst"] != "")]
        return m[~is_edge_res & ~has_peer], edges

    @property
    def metrics(self) -> pd.DataFrame:
        """Node metrics (long: resource, name, ts, value): not per-edge series."""
        return self._metric_parts[0]

    @cached_property
    def metric_series(self) -> tuple[np.ndarray, list[tuple]]:
        """Which series each row of ``metrics`` belongs to: a code per row (numbered in order of first
        appearance) and each code's (resource, name). Worked out once: factorizing the string columns
        is the slow part of grouping them."""
        m = self.metrics
        if m.empty:
            return np.zeros(0, dtype=np.int64), []
        rc, ru = pd.factorize(m["resource"].to_numpy(object), use_na_sentinel=False)
        nc, nu = pd.factorize(m["name"].to_numpy(object), use_na_sentinel=False)
        k = max(len(nu), 1)
        codes, first = pd.factorize(rc.astype(np.int64) * k + nc)
        return codes.astype(np.int64), list(zip(ru[first // k], nu[first % k], strict=True))

    @property
    def edge_metrics(self) -> pd.DataFrame:
        """Per-edge latency series (long: src, dst, side client|server, name, ts, value)."""
        return self._metric_parts[1]

    # -- spans and logs ------------------------------------------------------------------------
    @cached_property
    def spans(self) -> pd.DataFrame:
        sp = self.obs.spans
        if sp.empty:
            return sp
        sp = _plain(sp)
        if sp.duplicated(["trace_id", "span_id"]).any():      # some exports repeat every span
            sp = sp.drop_duplicates(["trace_id", "span_id"]).reset_index(drop=True)
        return sp

    @cached_property
    def logs(self) -> pd.DataFrame:
        return _plain(self.obs.logs) if len(self.obs.logs) else self.obs.logs

    @cached_property
    def span_parents(self) -> pd.DataFrame:
        """Each span joined to its parent span (same trace). Columns: res, op, dur, start, p_res, p_op,
        p_dur, p_start, pkey (integer id of the parent span), trace (integer trace code)."""
        cols = ["res", "op", "dur", "start", "p_res", "p_op", "p_dur", "p_start", "pkey", "trace"]
        sp = self.spans
        if sp.empty:
            return pd.DataFrame(columns=cols)
        n = len(sp)
        tcode = pd.factorize(sp["trace_id"].to_numpy(object))[0].astype(np.int64)
        scode = pd.factorize(np.concatenate([sp["span_id"].to_numpy(object), sp["parent_id"].to_numpy(object)]))[0]
        m = np.int64(scode.max() + 1)
        sid, pid = tcode * m + scode[:n], tcode * m + scode[n:]
        res = pd.Categorical(sp["resource"].to_numpy(object))
        op = pd.Categorical(sp["operation"].to_numpy(object))
        base = pd.DataFrame({"sid": sid, "pid": pid, "res": res, "op": op, "trace": tcode,
                             "dur": sp["duration_ms"].to_numpy(float), "start": sp["start"].to_numpy(float)})
        par = base.drop_duplicates("sid").set_index("sid")
        j = base[base["pid"].isin(par.index)]
        p = par.loc[j["pid"].to_numpy()]
        return pd.DataFrame({"res": j["res"].astype(str).to_numpy(), "op": j["op"].astype(str).to_numpy(),
                             "dur": j["dur"].to_numpy(), "start": j["start"].to_numpy(),
                             "p_res": p["res"].astype(str).to_numpy(), "p_op": p["op"].astype(str).to_numpy(),
                             "p_dur": p["dur"].to_numpy(), "p_start": p["start"].to_numpy(),
                             "pkey": j["pid"].to_numpy(), "trace": j["trace"].to_numpy()})

    @cached_property
    def span_calls(self):
        """Service call edges the spans show (with call counts as weights)."""
        return call_edges(self.spans) if len(self.spans) else []

    @cached_property
    def edges(self) -> pd.DataFrame:
        """Call edges (src, dst, kind, weight): the topology's, then the spans'."""
        rows = [{"src": e.src, "dst": e.dst, "kind": "calls", "weight": e.weight} for e in self.topology.edges
                if e.kind in (EdgeKind.CALLS, EdgeKind.DEPENDS_ON)]
        rows += [{"src": e.src, "dst": e.dst, "kind": "calls", "weight": e.weight} for e in self.span_calls]
        em = self.edge_metrics
        if len(em):     # a per-edge series is a call edge too
            rows += [{"src": a, "dst": b, "kind": "calls", "weight": 0.0}
                     for a, b in em[["src", "dst"]].drop_duplicates().itertuples(index=False)]
        return pd.DataFrame(rows, columns=["src", "dst", "kind", "weight"])

    @cached_property
    def graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for r in self.edges.itertuples(index=False):
            g.add_edge(r.src, r.dst)
        return g

    @cached_property
    def templater(self):
        """The run's one Drain template miner (request patterns and log shifts share its templates)."""
        from vigil.engine.templates import Templater
        return Templater()

    @cached_property
    def _template_ids(self) -> np.ndarray:
        return np.full(len(self.logs), -1, dtype=np.int64)

    def template_ids(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Template ids of the log lines at ``rows`` (positions; a boolean mask or None for all). Lines
        are mined the first time they are asked for, in the order they came: analyzers ask only for the
        lines inside their windows."""
        ids = self._template_ids
        idx = np.arange(len(ids)) if rows is None else (np.flatnonzero(rows) if np.asarray(rows).dtype == bool
                                                       else np.asarray(rows, dtype=np.int64))
        todo = idx[ids[idx] < 0]
        if len(todo):
            todo = np.unique(todo)
            ids[todo] = self.templater.ids(self.logs["body"].to_numpy(object)[todo])
        return ids[idx]

    @cached_property
    def log_levels(self) -> np.ndarray:
        from vigil.engine.templates import levels
        return levels(self.logs) if len(self.logs) else np.array([], dtype=object)


__all__ = ["SIGNALS", "FaultKind", "Prepared", "python_strings", "series_step"]
