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
5. Optional resource evidence: for each service and each resource metric (name matching
   metric_regex), E = (max in incident - max in reference) / (range in reference); reference is the
   30 minutes before the alert (or the baseline windows). E >= alarm_ranges raises an alarm that is
   added, Nezha-style, as an event to every incident visit of that service (it never occurs in the
   baseline), and is scored like any other feature.
6. Service score = max evidence over its keys and features; rank by score.
"""
from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
from scipy.stats import hypergeom

from vigil.engine.logs import mask_tokens

logging.getLogger("drain3").setLevel(logging.WARNING)

_KV = re.compile(r"\b(\w+)=(?!<)[^\s,;&)\]}]+")     # key=value parameters
_LEVEL_RE = re.compile(r"\b(FATAL|CRITICAL|ERROR|WARN(?:ING)?|INFO|DEBUG|TRACE)\b")
_ERROR_LEVELS = ("ERROR", "FATAL", "CRITICAL", "WARN", "WARNING")


@dataclass
class Config:
    incident: tuple[float, float] = (0.0, 120.0)   # seconds relative to the alert
    early: float = 0.0                             # also try the incident as starting this long before the alert
    fdr: float = 0.2                               # BH false-discovery rate for a feature to count
    max_body: int = 400
    max_tokens: int = 16                           # template = Drain over the first tokens of the masked line
    metric_regex: str = r"^(?!.*node).*(?:cpu|mem)"     # per-service resource metrics (host-level ones are shared)
    metric_ref_s: float = 1800.0
    metric_inc_s: float = 180.0
    alarm_ranges: float = 10.0                     # only for metric_mode='event'
    metric_mode: str = "event"                      # 'tail': score log(1+E); 'event': Nezha-style alarm event
    drain_sim: float = 0.6
    features: str = "all"                          # ablation: 'all' | 'presence' | 'pairs'
    kt_incident: bool = True                       # ablation: add-1/2 smoothing of the incident rate too
    error_rule: bool = True                        # ablation: vanished error-level logs are not symptoms
    drain_max_children: int = 1000                 # default 100 overflows into '<*>' and merges loggers
    drain_depth: int = 7                           # prefix tree keyed on the first 3 tokens (time, level, logger)
    placeholder: str = "<*>"                      # masked values are Drain wildcards: they never count as similar


_LIST = re.compile(r"[\[{(][^\[\]{}()]*,[^\[\]{}()]*[\]})]")   # innermost bracketed comma-list


def mask(s: str, ph: str | None = None) -> str:
    # token by token (cached: most tokens recur), then the patterns that span tokens
    s = " ".join(mask_tokens(s.split()[:32], ph))
    for _ in range(4 if "," in s else 0):   # variable-length lists -> one token, so Drain's length split is stable
        s2 = _LIST.sub(ph or "<LIST>", s)
        if s2 == s:
            break
        s = s2
    return _KV.sub(r"\1=" + (ph or "<V>"), s) if "=" in s else s


# ----------------------------------------------------------------------------------------- templates
class Templater:
    def __init__(self, cfg: Config):
        c = TemplateMinerConfig()
        c.drain_sim_th = cfg.drain_sim
        c.drain_depth = cfg.drain_depth
        c.drain_max_children = cfg.drain_max_children
        c.parametrize_numeric_tokens = False
        self.miner = TemplateMiner(config=c)
        self.cache: dict[str, int] = {}
        self.sample: dict[int, str] = {}      # one raw line per template, for people (and the fault kind)
        self.max_body = cfg.max_body
        self.max_tokens = cfg.max_tokens
        self.placeholder = cfg.placeholder

    def ids(self, bodies: pd.Series) -> np.ndarray:
        ph = self.placeholder
        masked = [" ".join(mask(str(b)[: self.max_body], ph).split()[: self.max_tokens]) for b in bodies]
        out = np.empty(len(masked), dtype=np.int64)
        for i, m in enumerate(masked):
            cid = self.cache.get(m)
            if cid is None:
                cid = self.miner.add_log_message(m)["cluster_id"]
                self.cache[m] = cid
                self.sample.setdefault(cid, str(bodies.iloc[i])[: self.max_body])
            out[i] = cid
        return out

    def text(self, cid: int) -> str:
        for c in self.miner.drain.clusters:
            if c.cluster_id == cid:
                return c.get_template()
        return str(cid)


def _levels(logs: pd.DataFrame) -> np.ndarray:
    if "level" in logs.columns:
        lv = logs["level"].astype(str).str.upper().str.strip()
        bad = ~lv.isin(["FATAL", "CRITICAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "TRACE"])
    else:
        lv = pd.Series([""] * len(logs), index=logs.index)
        bad = pd.Series(True, index=logs.index)
    if bad.any():
        lv[bad] = [(_LEVEL_RE.search(str(b)[:200]) or [None, "INFO"])[1] for b in logs.loc[bad, "body"]]
    return lv.replace({"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}).to_numpy()


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


def build_units(spans: pd.DataFrame, logs: pd.DataFrame, tpl: Templater) -> pd.DataFrame:
    """One row per service visit: unit, trace, svc, op, parent_unit, feats (frozenset)."""
    S = spans.drop_duplicates("span_id").reset_index(drop=True)
    svc_of = pd.Series(S["resource"].to_numpy(), index=S["span_id"].to_numpy())
    psvc = S["parent_id"].map(svc_of)
    entry = (psvc.isna() | (psvc.to_numpy() != S["resource"].to_numpy())).to_numpy()
    unit = pd.Series(np.where(entry, S["span_id"], None), index=S["span_id"].to_numpy(), dtype=object)
    for _ in range(64):                                   # propagate unit ids down same-service chains
        miss = unit.isna().to_numpy()
        if not miss.any():
            break
        unit[miss] = S["parent_id"][miss].map(unit).to_numpy()
    S["unit"] = unit.to_numpy()
    S["entry"] = entry
    E = S[entry]
    units = pd.DataFrame({"unit": E["span_id"].to_numpy(), "trace": E["trace_id"].to_numpy(),
                          "svc": E["resource"].to_numpy(), "op": E["operation"].astype(str).to_numpy(),
                          "start": E["start"].to_numpy()})
    units["parent_unit"] = E["parent_id"].map(unit).to_numpy()
    # events: internal spans / outgoing calls
    callee = E[E["parent_id"].notna()].drop_duplicates("parent_id").set_index("parent_id")
    inner = S[~entry]
    cs = inner["span_id"].map(callee["resource"])
    co = inner["span_id"].map(callee["operation"])
    lab = np.where(cs.notna(), ">" + cs.astype(str) + " " + co.astype(str), inner["operation"].astype(str))
    ev_u = [inner["unit"].to_numpy()]
    ev_t = [inner["start"].to_numpy(dtype=float)]
    ev_e = [lab]
    # events: logs
    if len(logs):
        lu = logs["span_id"].map(unit)
        ok = lu.notna().to_numpy()
        lg = logs[ok]
        if len(lg):
            ids = tpl.ids(lg["body"])
            lv = _levels(lg)
            ev_u.append(lu[ok].to_numpy())
            ev_t.append(lg["ts"].to_numpy(dtype=float))
            ev_e.append(np.array([f"L:{lvl} {i}" for lvl, i in zip(lv, ids, strict=False)], dtype=object))
    ev_u, ev_t, ev_e = np.concatenate(ev_u), np.concatenate(ev_t), np.concatenate(ev_e).astype(object)
    order = np.lexsort((ev_t, pd.factorize(ev_u)[0]))      # by unit, then time (stable for ties)
    seqs: dict = defaultdict(list)
    for u, e in zip(ev_u[order], ev_e[order], strict=False):
        seqs[u].append(e)
    feats = []
    for u in units["unit"].to_numpy():
        s = seqs.get(u, [])
        c = ["^"]
        for e in s:
            if e != c[-1]:
                c.append(e)
        c.append("$")
        f = set(zip(c[:-1], c[1:], strict=False))
        f.update(("#", e) for e in c[1:-1])
        feats.append(frozenset(f))
    units["feats"] = feats
    return units


# ---------------------------------------------------------------------------------------- statistics
def _kl(r: float, q: float) -> float:
    r = min(max(r, 1e-12), 1 - 1e-12)
    q = min(max(q, 1e-12), 1 - 1e-12)
    return r * np.log(r / q) + (1 - r) * np.log((1 - r) / (1 - q))


def _is_err(f) -> bool:
    return any(isinstance(e, str) and e.startswith(("L:ERROR", "L:WARN")) for e in f)


def _counts(units: pd.DataFrame):
    key = list(zip(units["svc"], units["op"], strict=False))
    n = Counter(key)
    c: Counter = Counter()
    for k, fs in zip(key, units["feats"], strict=False):
        for f in fs:
            c[(k, f)] += 1
    return n, c


def feature_table(base_counts, inc_counts, cfg: Config) -> pd.DataFrame:
    """One row per (service, entry operation, feature) that changed between the baseline's and the
    incident's visit counts (each as ``_counts`` gives them), with its Fisher p, BH q and KL score."""
    (nb, cb), (ni, ci) = base_counts, inc_counts
    rows = []
    for (k, f) in sorted(set(cb) | set(ci), key=repr):   # a fixed order: ties must not depend on hashing
        A, B = nb.get(k, 0), ni.get(k, 0)
        if A == 0 or B == 0:
            continue
        if (cfg.features == "presence" and f[0] != "#") or (cfg.features == "pairs" and f[0] == "#"
                                                             and not str(f[1]).startswith("A:")):
            continue
        a, b = cb.get((k, f), 0), ci.get((k, f), 0)
        if b / B > a / A:
            d, x, y = "new", a, b
        elif b / B < a / A:
            if cfg.error_rule and _is_err(f):
                continue
            d, x, y = "missing", A - a, B - b
        else:
            continue
        q = (x + 0.5) / (A + 1)
        r = (y + 0.5) / (B + 1) if cfg.kt_incident else y / B
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


# ------------------------------------------------------------------------------------------- metrics
def metric_alarms(metrics: pd.DataFrame | None, alert: float, baselines, cfg: Config) -> dict:
    """service -> (metric name, E) for resource metrics whose incident peak exceeds the reference
    maximum by at least cfg.alarm_ranges reference ranges."""
    if metrics is None or len(metrics) == 0:
        return {}
    M = metrics[metrics["name"].astype(str).str.contains(cfg.metric_regex, case=False, regex=True)]
    out = {}
    for (res, name), g in M.groupby(["resource", "name"]):
        ts, v = g["ts"].to_numpy(dtype=float), g["value"].to_numpy(dtype=float)
        ref = v[(ts >= alert - cfg.metric_ref_s) & (ts < alert - 60)]
        if len(ref) < 5:
            mb = np.zeros(len(ts), bool)
            for a, b in baselines:
                mb |= (ts >= a - 60) & (ts < b + 60)
            ref = np.concatenate([ref, v[mb]])
        inc = v[(ts >= alert) & (ts < alert + cfg.metric_inc_s)]
        if len(ref) < 3 or len(inc) == 0:
            continue
        rng = np.nanmax(ref) - np.nanmin(ref)
        if not np.isfinite(rng) or rng <= 0:
            continue
        E = (np.nanmax(inc) - np.nanmax(ref)) / rng
        if E > 0 and E > out.get(res, ("", 0))[1]:
            out[res] = (str(name), float(E), len(ref), len(inc))
    return out


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
        if isinstance(e, str) and e.startswith("A:"):
            return f"resource alarm {e[2:]}"
        return f"span '{e}'"
    f = row["feat"]
    what = ev(f[1]) if f[0] == "#" else f"{ev(f[0])} -> {ev(f[1])}"
    if row["dir"] == "new":
        return (f"{row['op']}: {what} in {row['b']}/{row['B']} incident requests vs {row['a']}/{row['A']} "
                f"baseline")
    return (f"{row['op']}: expected {what} missing in {row['B'] - row['b']}/{row['B']} incident requests "
            f"(baseline present {row['a']}/{row['A']})")


def rank_root_causes(logs: pd.DataFrame, spans: pd.DataFrame, baselines: list[tuple[float, float]],
                     alert: float, metrics: pd.DataFrame | None = None, cfg: Config | None = None,
                     return_table: bool = False, max_traces: int = MAX_TRACES):
    """Rank root-cause services for an alert.

    logs:    columns resource, ts (epoch s), level (optional), body, trace_id, span_id
    spans:   columns trace_id, span_id, parent_id, resource, operation, start (epoch s), duration_ms
    baselines: fault-free windows [(start, end), ...] (epoch s); traces are taken by root-span start
    alert:   alert time (epoch s); the incident window is alert + cfg.incident
    metrics: optional, columns resource, name, ts, value (needs ~30 min before the alert, or baselines)
    Returns [(service, score in nats per request, evidence)], best first (only services with evidence);
    with ``return_table`` also the feature table and the templater (template texts and sample lines).
    """
    cfg = cfg or Config()
    tpl = Templater(cfg)
    # plain object columns: pandas' Arrow-backed string comparisons are the slow part otherwise
    spans = spans.astype({c: object for c in ("trace_id", "span_id", "parent_id", "resource", "operation")
                          if c in spans.columns})
    logs = logs.astype({c: object for c in ("trace_id", "span_id", "resource", "body") if c in logs.columns})
    traces = _Traces(spans, logs)
    sb, lb = traces.select(baselines, max_traces)
    si, li = traces.select([(alert + cfg.incident[0], alert + cfg.incident[1])], max_traces)
    ub = build_units(sb, lb, tpl)
    ui = build_units(si, li, tpl)
    exceed = metric_alarms(metrics, alert, baselines, cfg)
    alarms = {s: v for s, v in exceed.items() if v[1] >= cfg.alarm_ranges} if cfg.metric_mode == "event" else {}

    def with_alarms(u: pd.DataFrame) -> pd.DataFrame:
        if not alarms:   # Nezha-style: an alarm is an event in every incident visit of the alarmed service
            return u
        u = u.copy()
        u["feats"] = [fs | {("#", f"A:{alarms[s][0]}")} if s in alarms else fs
                      for s, fs in zip(u["svc"], u["feats"], strict=False)]
        return u

    base_counts, inc_counts = _counts(ub), _counts(with_alarms(ui))
    R = feature_table(base_counts, inc_counts, cfg)
    if cfg.early > 0:
        # the fault may have begun before the alert: also read the incident from ``early`` seconds
        # before it, and keep whichever reading shows the stronger significant change (a late alert
        # then still sees the fault's first requests; an alert on time is not diluted by normal ones)
        se, le = traces.select([(alert - cfg.early, alert + cfg.incident[0])], max_traces)
        if len(se):
            ne, ce = _counts(with_alarms(build_units(se, le, tpl)))
            Rw = feature_table(base_counts, (ne + inc_counts[0], ce + inc_counts[1]), cfg)
            if _strongest(Rw, cfg) > _strongest(R, cfg):
                R = Rw
    G = R[R["q"] < cfg.fdr] if len(R) else R
    out = []
    if len(G):
        best = G.loc[G.groupby("svc")["score"].idxmax()].sort_values("score", ascending=False)
        for _, row in best.iterrows():
            ev = _describe(row, tpl)
            if row["svc"] in alarms and "A:" in str(row["feat"]):
                ev += f" (peak {alarms[row['svc']][1]:.1f} reference ranges above the reference maximum)"
            out.append((row["svc"], float(row["score"]), ev))
    if cfg.metric_mode == "tail":
        # heavy-tailed (Pareto-1) reading of an exceedance: P(peak > ref max + E ranges) ~ 1/(1+E)
        sc = {s: (v, e) for s, v, e in out}
        for s, (name, E, *_) in exceed.items():
            m = float(np.log1p(E))
            if m > sc.get(s, (0.0, ""))[0]:
                sc[s] = (m, f"resource {name}: incident peak {E:.1f} reference ranges above the "
                            f"{cfg.metric_ref_s / 60:.0f}-min reference maximum")
        out = sorted(((s, v, e) for s, (v, e) in sc.items()), key=lambda x: -x[1])
    else:
        seen = {s for s, _, _ in out}
        for s in alarms:   # alarmed service without traced visits: same KL, over metric samples
            if s not in seen:
                n_ref, n_inc = alarms[s][2], alarms[s][3]
                out.append((s, _kl((n_inc + 0.5) / (n_inc + 1), 0.5 / (n_ref + 1)),
                            f"resource alarm {alarms[s][0]}: peak {alarms[s][1]:.1f} reference ranges above the "
                            f"reference maximum (no traced requests)"))
        out.sort(key=lambda x: -x[1])
    return (out, R, tpl) if return_table else out


# -- the engine's analyzer interface ---------------------------------------------------------------
def analyze_patterns(obs, s) -> list:
    """Observation -> Findings (category ``pattern``) when spans tie the work of each request together.
    The reference is the marked fault-free windows, else the minutes before the onset."""
    from vigil.engine.findings import Finding
    from vigil.model import EvidenceKind

    spans, logs = obs.spans, obs.logs
    if spans.empty:
        return []
    baselines = [(a, b + 1.0) for a, b in obs.baselines]
    if not baselines:
        baselines = [(obs.onset - s.event_lookback_s, obs.onset - s.onset_guard_s)]
    try:
        # the fault may have begun up to onset_guard_s before the alert, as the other analyzers assume
        ranked, table, tpl = rank_root_causes(logs if len(logs) else logs.iloc[0:0], spans, baselines, obs.onset,
                                              cfg=Config(early=s.onset_guard_s), return_table=True,
                                              max_traces=s.pattern_traces)
    except (KeyError, ValueError):   # too little data to build request units
        return []
    best, new_error = {}, {}
    if len(table):
        g = table[table["q"] < Config().fdr]
        if len(g):
            best = {str(r["svc"]): r for _, r in g.loc[g.groupby("svc")["score"].idxmax()].iterrows()}
            # the strongest new error-level line in each service's own requests: what it says is the
            # most specific evidence of the fault kind, whichever feature scored highest
            e = g[(g["dir"] == "new") & g["feat"].map(_is_err)]
            for _, r in e.loc[e.groupby("svc")["score"].idxmax()].iterrows() if len(e) else ():
                cid = next(int(x.split(" ", 1)[1]) for x in r["feat"]
                           if isinstance(x, str) and x.startswith(("L:ERROR", "L:WARN")))
                new_error[str(r["svc"])] = {"template": tpl.text(cid), "sample": tpl.sample.get(cid, ""),
                                            "operation": str(r["op"]), "before": f"{int(r['a'])}/{int(r['A'])}",
                                            "after": f"{int(r['b'])}/{int(r['B'])}"}
    out = []
    for service, score, evidence in ranked:
        row = best.get(str(service))
        feat = row["feat"] if row is not None else ("#", "")
        shape = "presence" if feat[0] == "#" else "pair"
        events = [str(e) for e in (feat[1:] if shape == "presence" else feat)]
        out.append(Finding(
            resource=str(service), signal=EvidenceKind.LOG if any(e.startswith("L:") for e in events)
            else EvidenceKind.TRACE, category="pattern", score=float(score), title=evidence,
            detail={"nats_per_request": round(float(score), 3), "shape": shape,
                    "direction": str(row["dir"]) if row is not None else "",
                    "ends_request": shape == "pair" and events[-1] == "$",
                    "error_log": any(e.startswith(("L:ERROR", "L:WARN", "L:FATAL")) for e in events),
                    "operation": str(row["op"]) if row is not None else "",
                    "before": f"{int(row['a'])}/{int(row['A'])}" if row is not None else "",
                    "after": f"{int(row['b'])}/{int(row['B'])}" if row is not None else "",
                    **({"new_error": new_error[str(service)]} if str(service) in new_error else {})}))
    return out
