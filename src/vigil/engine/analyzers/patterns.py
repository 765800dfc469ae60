"""Per-request event-pattern divergence: what a service does inside one request, before vs now.

Method ("per-request event-pattern divergence", Nezha-style but count-based and normalised per request):

1. Unit of behaviour = one *service visit*: a span whose parent is in another service (or has no parent),
   together with every same-service descendant span and every log line attached (by span_id) to those spans.
   Its *key* is (service, operation of the entry span).
2. Events of a unit, ordered by time: log templates (prefixed with the log level; Drain3 over the first
   16 tokens of the line after masking ids/numbers/timestamps/key=value values/bracketed lists to '<*>',
   depth 7, max_children 1000 so the logger token stays a tree key), internal span operations, outgoing calls ('>callee-service callee-entry-operation'). Repeated
   identical consecutive events are collapsed; '^' and '$' mark the start and the end of the visit.
3. Features of a unit (binary): presence of each event ('#', e) and each consecutive pair (e1, e2)
   including ('^', first) and (last, '$') -- i.e. "A directly followed by B inside the same visit".
4. For every (key, feature): a of A baseline visits and b of B incident visits show it. The anomalous
   state is "has the feature" if the incident rate is higher ('new' behaviour) and "lacks the feature" if
   it is lower ('missing' behaviour; never for features containing an error-level log: errors that stop
   are a recovery, not a symptom). Evidence = KL( r || q ) in nats per visit between the incident and
   the baseline probability of the anomalous state, both estimated with the Krichevsky-Trofimov
   (add-1/2) estimator, q=(x+.5)/(X+1), r=(y+.5)/(Y+1). A one-sided Fisher exact test per (key,feature)
   with Benjamini-Hochberg over all tested pairs (FDR < fdr) keeps only supported features.
5. Service score = max evidence over its keys and features; rank by score.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from vigil.engine.findings import Finding, NewErrorLine, PatternChange
from vigil.engine.prepared import Prepared
from vigil.engine.templates import Templater, levels
from vigil.model import EvidenceKind, FaultKind


@dataclass(frozen=True)
class Config:
    incident_s: float = 120.0                      # the incident: the two minutes after the alert...
    early_s: float | None = None                   # ...also read from this long before it (None: the onset guard)
    fdr: float = 0.2                               # BH false-discovery rate for a feature to count


# --------------------------------------------------------------------------------------------- units
MAX_TRACES = 3000   # per side: frequencies of steps per request are well estimated long before this


class _Traces:
    """Which trace each span and log line belongs to, and when each trace's root span starts: worked
    out once, so that picking the traces of a window is a few array operations."""

    def __init__(self, spans: pd.DataFrame, logs: pd.DataFrame):
        self.spans, self.logs = spans, logs
        codes, uniq = pd.factorize(np.concatenate([spans["trace_id"].to_numpy(object),
                                                   logs["trace_id"].to_numpy(object)]), use_na_sentinel=False)
        self.n = len(uniq)
        self.span_trace, self.log_trace = codes[:len(spans)], codes[len(spans):]
        pid = spans["parent_id"]
        is_root = (pid.isna() | (pid == "") | ~pid.isin(set(spans["span_id"]))).to_numpy(bool)
        self.root_trace = self.span_trace[is_root]
        self.root_start = spans["start"].to_numpy(float)[is_root]

    def select(self, windows: list[tuple[float, float]], max_traces: int = MAX_TRACES):
        """Traces whose root span starts inside one of the windows; all their spans and logs. A busy
        system's window is thinned evenly in time to at most ``max_traces`` traces."""
        m = np.zeros(len(self.root_start), bool)
        for a, b in windows:
            m |= (self.root_start >= a) & (self.root_start < b)
        order = np.argsort(self.root_start[m], kind="stable")
        chosen = self.root_trace[m][order]
        if len(chosen) > max_traces:
            chosen = chosen[np.linspace(0, len(chosen) - 1, max_traces).astype(int)]
        keep = np.zeros(self.n, bool)
        keep[chosen] = True
        return self.spans[keep[self.span_trace]], self.logs[keep[self.log_trace]]


def visit_counts(spans: pd.DataFrame, logs: pd.DataFrame, template_ids) -> tuple[Counter, Counter]:
    """Service visits (see the module's docstring) counted: visits per key (service, entry operation),
    and visits per (key, feature) that show the feature. ``logs`` carry each line's position (``_row``)
    and level (``lvl``); ``template_ids(rows)`` gives their templates.

    Worked out on integer codes (spans by position, events by vocabulary code): the same features as
    building each visit's event list and feature set in Python, in a fraction of the time."""
    S = spans.drop_duplicates("span_id")
    n = len(S)
    if n == 0:
        return Counter(), Counter()
    sid, pid = S["span_id"].to_numpy(object), S["parent_id"].to_numpy(object)
    res, ops = S["resource"].to_numpy(object), S["operation"].to_numpy(object)
    index = pd.Index(sid)
    par = index.get_indexer(pid)                          # each span's parent's position (-1: not here)
    psvc = np.where(par >= 0, res[np.maximum(par, 0)], None)
    entry = pd.isna(psvc) | (psvc != res)
    unit = np.where(entry, np.arange(n), -1)              # each span's visit: the position of its entry span
    for _ in range(64):                                   # propagate down same-service chains
        miss = unit < 0
        if not miss.any():
            break
        unit[miss] = unit[par[miss]]
    ent = np.flatnonzero(entry)
    U = len(ent)
    ordinal = np.full(n + 1, -1, dtype=np.int64)          # entry position -> visit number (index n: none)
    ordinal[ent] = np.arange(U)
    visit = ordinal[np.where(unit >= 0, unit, n)]
    # events: internal spans, or outgoing calls ('>callee-service callee-entry-operation')
    callee = np.full(n, -1, dtype=np.int64)               # the first visit each span's call started
    called = ent[par[ent] >= 0]
    if len(called):
        _, first = np.unique(par[called], return_index=True)
        callee[par[called[first]]] = called[first]
    inner = np.flatnonzero(~entry)
    labels = [f">{res[c]} {ops[c]}" if c >= 0 else str(ops[i]) for i, c in zip(inner, callee[inner], strict=True)]
    ev_v, ev_t = [visit[inner]], [S["start"].to_numpy(dtype=float)[inner]]
    ev_e = [np.array(labels, dtype=object)]
    if len(logs):                                         # events: log lines (level and template)
        li = index.get_indexer(logs["span_id"].to_numpy(object))
        lv = np.where(li >= 0, visit[np.maximum(li, 0)], -1)
        ok = lv >= 0
        if ok.any():
            ids, lvl = template_ids(logs["_row"].to_numpy()[ok]), logs["lvl"].to_numpy()[ok]
            codes, pairs = _pair_codes(lvl, ids)
            text = np.array([f"L:{a} {b}" for a, b in pairs], dtype=object)
            ev_v.append(lv[ok])
            ev_t.append(logs["ts"].to_numpy(dtype=float)[ok])
            ev_e.append(text[codes])
    ev_v, ev_t, ev_e = np.concatenate(ev_v), np.concatenate(ev_t), np.concatenate(ev_e)
    keep = ev_v >= 0
    ev_v, ev_t, ev_e = ev_v[keep], ev_t[keep], ev_e[keep]
    # vocabulary codes: the markers first ('^' start, '$' end, '#' presence), then every event
    code, vocab = pd.factorize(np.concatenate([np.array(["^", "$", "#"], dtype=object), ev_e]))
    START, END, HASH = code[0], code[1], code[2]
    V = max(len(vocab), 1)
    # each visit's sequence: '^', its events by time (ties in the order they came), '$'
    tv = np.concatenate([np.arange(U), ev_v, np.arange(U)])
    phase = np.concatenate([np.zeros(U, np.int8), np.ones(len(ev_v), np.int8), np.full(U, 2, np.int8)])
    tt = np.concatenate([np.zeros(U), ev_t, np.zeros(U)])
    te = np.concatenate([np.full(U, START), code[3:], np.full(U, END)])
    o = np.lexsort((tt, phase, tv))
    tv, phase, te = tv[o], phase[o], te[o]
    # repeated identical consecutive events collapse (the end marker always stays)
    dup = np.zeros(len(te), bool)
    dup[1:] = (phase[1:] == 1) & (te[1:] == te[:-1])
    tv, phase, te = tv[~dup], phase[~dup], te[~dup]
    # features: consecutive pairs, and the presence of each event
    pair = np.flatnonzero(tv[1:] == tv[:-1])
    pres = np.flatnonzero(phase == 1)
    f_v = np.concatenate([tv[pair], tv[pres]])
    f_id = np.concatenate([te[pair].astype(np.int64) * V + te[pair + 1], HASH * np.int64(V) + te[pres]])
    fcode, funiq = pd.factorize(f_id)
    F = max(len(funiq), 1)
    vf = np.unique(f_v.astype(np.int64) * F + fcode)      # each visit's distinct features
    key_code, key_uniq = _pair_codes(res[ent], np.array([str(x) for x in ops[ent]], dtype=object))
    visits = Counter(dict(zip(key_uniq, np.bincount(key_code, minlength=len(key_uniq)).tolist(), strict=True)))
    kf, cnt = np.unique(key_code[vf // F].astype(np.int64) * F + vf % F, return_counts=True)
    fid = funiq[kf % F]
    a, b = fid // V, fid % V
    feats: Counter = Counter()
    for k, x, y, c in zip((kf // F).tolist(), a.tolist(), b.tolist(), cnt.tolist(), strict=True):
        feats[(key_uniq[k], (vocab[x], vocab[y]))] = c
    return visits, feats


def _pair_codes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """Integer codes of the pairs (a[i], b[i]), numbered in order of first appearance, and each code's pair."""
    ac, au = pd.factorize(np.asarray(a, dtype=object), use_na_sentinel=False)
    bc, bu = pd.factorize(np.asarray(b, dtype=object), use_na_sentinel=False)
    nb = max(len(bu), 1)
    codes, uniq = pd.factorize(ac.astype(np.int64) * nb + bc)
    return codes, [(au[x // nb], bu[x % nb]) for x in uniq.tolist()]


# ---------------------------------------------------------------------------------------- statistics
def _kl(r: float, q: float) -> float:
    r = min(max(r, 1e-12), 1 - 1e-12)
    q = min(max(q, 1e-12), 1 - 1e-12)
    return r * np.log(r / q) + (1 - r) * np.log((1 - r) / (1 - q))


def _is_err(f) -> bool:
    return any(isinstance(e, str) and e.startswith(("L:ERROR", "L:WARN")) for e in f)


def feature_table(base_counts, inc_counts) -> pd.DataFrame:
    """One row per (service, entry operation, feature) that changed between the baseline's and the
    incident's visit counts (each as ``_counts`` gives them), with its Fisher p, BH q and KL score."""
    (nb, cb), (ni, ci) = base_counts, inc_counts
    rows = []
    for (k, f) in sorted(set(cb) | set(ci), key=repr):   # a fixed order: ties must not depend on hashing
        A, B = nb.get(k, 0), ni.get(k, 0)
        if A == 0 or B == 0:
            continue
        a, b = cb.get((k, f), 0), ci.get((k, f), 0)
        if b / B > a / A:
            d, x, y = "new", a, b
        elif b / B < a / A:
            if _is_err(f):
                continue
            d, x, y = "missing", A - a, B - b
        else:
            continue
        q = (x + 0.5) / (A + 1)
        r = (y + 0.5) / (B + 1)
        if r <= q:
            continue
        rows.append((k[0], k[1], f, a, A, b, B, d, x, y, _kl(r, q)))
    R = pd.DataFrame(rows, columns=["svc", "op", "feat", "a", "A", "b", "B", "dir", "x", "y", "score"])
    # one-sided Fisher exact test of [[x, A-x], [y, B-y]] ("less"): P(X <= x), X hypergeometric
    R.insert(8, "p", hypergeom.cdf(R["x"], R["A"] + R["B"], R["A"], R["x"] + R["y"]) if len(R) else [])
    R = R.drop(columns=["x", "y"])
    if len(R):
        R = R.sort_values("p").reset_index(drop=True)
        m = len(R)
        R["q"] = np.minimum.accumulate((R["p"] * m / np.arange(1, m + 1))[::-1])[::-1]
    return R


def _strongest(R: pd.DataFrame, cfg: Config) -> float:
    """The largest score among the features that pass the false-discovery bar (0 if none does)."""
    if not len(R):
        return 0.0
    g = R.loc[R["q"] < cfg.fdr, "score"]
    return float(g.max()) if len(g) else 0.0


# -------------------------------------------------------------------------------------------- public
def _describe(row, tpl: Templater) -> str:
    def ev(e):
        if e in ("^", "$", "#"):
            return {"^": "start", "$": "end", "#": ""}[e]
        if isinstance(e, str) and e.startswith("L:"):
            lv, cid = e[2:].split(" ", 1)
            try:
                return f"log[{lv}] '{tpl.text(int(cid))[:90]}'"
            except ValueError:
                return e
        return f"span '{e}'"
    f = row["feat"]
    what = ev(f[1]) if f[0] == "#" else f"{ev(f[0])} -> {ev(f[1])}"
    if row["dir"] == "new":
        return (f"{row['op']}: {what} in {row['b']}/{row['B']} incident requests vs {row['a']}/{row['A']} "
                f"baseline")
    return (f"{row['op']}: expected {what} missing in {row['B'] - row['b']}/{row['B']} incident requests "
            f"(baseline present {row['a']}/{row['A']})")


def rank_root_causes(logs: pd.DataFrame, spans: pd.DataFrame, baselines: list[tuple[float, float]],
                     alert: float, cfg: Config | None = None,
                     return_table: bool = False, max_traces: int = MAX_TRACES, early: float = 0.0,
                     tpl: Templater | None = None, template_ids=None, log_levels=None):
    """Rank root-cause services for an alert.

    logs:    columns resource, ts (epoch s), level (optional), body, trace_id, span_id
    spans:   columns trace_id, span_id, parent_id, resource, operation, start (epoch s), duration_ms
    baselines: fault-free windows [(start, end), ...] (epoch s); traces are taken by root-span start
    alert:   alert time (epoch s); the incident window is [alert, alert + cfg.incident_s)
    early:   also read the incident as starting this long before the alert, and keep the stronger reading
    Returns [(service, score in nats per request, evidence)], best first (only services with evidence);
    with ``return_table`` also the feature table and the templater (template texts and sample lines).
    ``tpl``, ``template_ids(rows)`` and ``log_levels``: the run's templater, template ids of log lines by
    position, and every line's level (worked out here when not given).
    """
    cfg = cfg or Config()
    if template_ids is None:
        tpl = tpl or Templater()
        bodies = logs["body"].to_numpy(object)

        def template_ids(rows):
            return tpl.ids(bodies[rows])
    if log_levels is None:
        log_levels = levels(logs) if len(logs) else np.array([], dtype=object)
    logs = logs.assign(_row=np.arange(len(logs)), lvl=log_levels)
    # plain object columns: pandas' Arrow-backed string comparisons are the slow part otherwise
    spans = spans.astype({c: object for c in ("trace_id", "span_id", "parent_id", "resource", "operation")
                          if c in spans.columns})
    logs = logs.astype({c: object for c in ("trace_id", "span_id", "resource", "body") if c in logs.columns})
    traces = _Traces(spans, logs)
    sb, lb = traces.select(baselines, max_traces)
    si, li = traces.select([(alert, alert + cfg.incident_s)], max_traces)
    base_counts = visit_counts(sb, lb, template_ids)
    inc_counts = visit_counts(si, li, template_ids)
    R = feature_table(base_counts, inc_counts)
    if early > 0:
        # the fault may have begun before the alert: also read the incident from ``early`` seconds
        # before it, and keep whichever reading shows the stronger significant change (a late alert
        # then still sees the fault's first requests; an alert on time is not diluted by normal ones)
        se, le = traces.select([(alert - early, alert)], max_traces)
        if len(se):
            ne, ce = visit_counts(se, le, template_ids)
            Rw = feature_table(base_counts, (ne + inc_counts[0], ce + inc_counts[1]))
            if _strongest(Rw, cfg) > _strongest(R, cfg):
                R = Rw
    G = R[R["q"] < cfg.fdr] if len(R) else R
    out = []
    if len(G):
        best = G.loc[G.groupby("svc")["score"].idxmax()].sort_values("score", ascending=False)
        for _, row in best.iterrows():
            out.append((row["svc"], float(row["score"]), _describe(row, tpl)))
    return (out, R, tpl) if return_table else out


# -- the engine's analyzer interface ---------------------------------------------------------------
class Patterns:
    """Request patterns: when spans tie the work of each request together. The reference is the marked
    fault-free windows, else the minutes before the onset."""

    name = "patterns"
    family = "patterns"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["spans"] else "no spans (request patterns need traces)"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        return analyze_patterns(p, config)


def analyze_patterns(p: Prepared, cfg: Config) -> list[Finding]:
    s = p.settings
    spans, logs = p.spans, p.logs
    if spans.empty:
        return []
    baselines = [(a, b + 1.0) for a, b in p.marked]
    if not baselines:
        baselines = [(p.onset - s.event_lookback_s, p.onset - s.onset_guard_s)]
    max_traces = min(s.pattern_traces, s.quick_pattern_traces) if p.quick else s.pattern_traces
    try:
        # the fault may have begun up to onset_guard_s before the alert, as the other analyzers assume
        ranked, table, tpl = rank_root_causes(logs, spans, baselines, p.onset, cfg=cfg, return_table=True,
                                              max_traces=max_traces, tpl=p.templater,
                                              template_ids=p.template_ids, log_levels=p.log_levels,
                                              early=s.onset_guard_s if cfg.early_s is None else cfg.early_s)
    except (KeyError, ValueError):   # too little data to build request units
        return []
    best, new_error = {}, {}
    if len(table):
        g = table[table["q"] < cfg.fdr]
        if len(g):
            best = {str(r["svc"]): r for _, r in g.loc[g.groupby("svc")["score"].idxmax()].iterrows()}
            # the strongest new error-level line in each service's own requests: what it says is the
            # most specific evidence of the fault kind, whichever feature scored highest
            e = g[(g["dir"] == "new") & g["feat"].map(_is_err)]
            for _, r in e.loc[e.groupby("svc")["score"].idxmax()].iterrows() if len(e) else ():
                cid = next(int(x.split(" ", 1)[1]) for x in r["feat"]
                           if isinstance(x, str) and x.startswith(("L:ERROR", "L:WARN")))
                new_error[str(r["svc"])] = NewErrorLine(template=tpl.text(cid), sample=tpl.sample.get(cid, ""),
                                                        operation=str(r["op"]), before=f"{int(r['a'])}/{int(r['A'])}",
                                                        after=f"{int(r['b'])}/{int(r['B'])}")
    out = []
    for service, score, evidence in ranked:
        row = best.get(str(service))
        feat = row["feat"] if row is not None else ("#", "")
        shape = "presence" if feat[0] == "#" else "pair"
        events = [str(e) for e in (feat[1:] if shape == "presence" else feat)]
        detail = PatternChange(
            nats_per_request=round(float(score), 3), shape=shape,
            direction=str(row["dir"]) if row is not None else "",
            ends_request=shape == "pair" and events[-1] == "$",
            error_log=any(e.startswith(("L:ERROR", "L:WARN", "L:FATAL")) for e in events),
            operation=str(row["op"]) if row is not None else "",
            before=f"{int(row['a'])}/{int(row['A'])}" if row is not None else "",
            after=f"{int(row['b'])}/{int(row['B'])}" if row is not None else "",
            new_error=new_error.get(str(service)))
        out.append(Finding(
            resource=str(service), family="patterns", hypothesis="pattern",
            signal=EvidenceKind.LOG if any(e.startswith("L:") for e in events) else EvidenceKind.TRACE,
            score=float(score), title=evidence, fault_kind=pattern_kind(detail, evidence)[0], detail=detail))
    return out


_EXCEPTION = re.compile(r"exception|throw|traceback|stack ?trace|panic|caught|catch", re.I)


def pattern_kind(d: PatternChange, title: str) -> tuple[FaultKind, str]:
    """What a change in the steps of a service's requests says about the fault.

    A new error line is the most specific: it names an exception, or reports a wrong value or state.
    Otherwise, requests that now end early, or a step that no longer happens at all, mean the code
    path aborts (an exception); steps that still happen but in another order mean another branch was
    taken (a logic fault)."""
    err = d.new_error
    if err:   # what a new error line in its own requests says is the most specific, whatever scored highest
        line = f"{err.operation}: '{err.template[:120]}' in {err.after} requests vs {err.before} before"
        if _EXCEPTION.search(err.template + " " + err.sample):
            return FaultKind.ERROR, f"its requests started throwing exceptions ({line})"
        return FaultKind.LOGIC, f"its requests started reporting a wrong value or state ({line})"
    if d.direction == "new" and d.ends_request:
        return FaultKind.ERROR, ("its requests now end right after a step that used to be followed by more: "
                                 f"the code path aborts, as an exception does ({title})")
    if d.direction == "missing" and d.shape == "presence":
        return FaultKind.ERROR, f"a step its requests always took stopped happening: the code path aborts early ({title})"
    return FaultKind.LOGIC, f"its requests take another branch: their steps changed order ({title})"
