"""Hypothesis-specific local evidence on the call graph (metrics, per-edge latency, spans).

For every service and every fault hypothesis (CPU, self latency, network, traffic, call pattern),
the evidence that is *local* to the service: what its own series show once what its callees and
callers show is taken out. ``analyze_local`` adapts an Observation to ``rank`` and returns Findings.

rank(metrics, spans, edges, onset, edge_metrics=None, cfg=None) -> list of
    (service, score, fault_kind_guess, evidence_string)

Inputs (all generic, no service names):
  metrics      long frame (resource, name, ts, value); per-pod series. Metric *roles* are taken
               from the name (cpu, server latency, client latency, workload, success/error).
  spans        frame (trace_id, span_id, parent_id, resource, operation, start, duration_ms); may be
               empty or cover only part of the window.
  edges        frame (src, dst, kind, weight): call graph ("calls" rows); weights = call volume if known.
  onset        alert / onset time (epoch s).
  edge_metrics optional long frame (src, dst, side, ts, value) with side in {"client","server"}:
               per-edge latency measured at the caller and at the callee (service mesh).

Every series is compared with its own pre-onset history (lookback 30 min, post window 4 min):
  d = median(log x, post) - median(log x, lookback)   (log fold change; load series: log of means)
  z = d / max(noise, 0.1), noise = 1.4826 * MAD(diff(log x)) / sqrt 2   (load: Welch-type z)
  gate(z) = clip((|z| - 1) / 2, 0, 1)
Evidence per service s, all in fold-change units and multiplied by the gate of the series used:
  cpu      d_cpu(s) > 0
  latency  d_srv(s) - max(0, d_cli(s), max_v d_srv(v))   self latency not explained by its own
           outgoing calls or its callees; drops count x0.5
  network  per edge e=(u,v): g_e = d of log(client-side latency / server-side latency), from mesh
           edge metrics, else from spans (client span vs the callee's server span under it).
           Remove the far endpoint's common component (median g over its other edges, >= 0) and
           average over s's in-edges (or out-edges): a delay at v shows on all of v's edges only.
           Without either, fallback 0.5 x min over s's callers of their client-latency rise not
           explained by any callee's server latency.
  traffic  max_v share(s->v) * (drop(v) - drop(s)),  drop = max(0, -d_load): s stopped calling v
  trace    in s's own spans, P(s calls B | s called A) before (median over baseline minutes) vs
           after: max log(p0/p1) (p0 >= 0.5, n >= 5, error-handler ops ignored), minus the evidence
           of the callee that A called (s may just be reacting to that callee's error)
  entry    0.5 x gate on graph roots when an out-of-graph success rate fell (shortfall below the
           baseline best grew); a fallback for faults that only show as user-facing errors
score(s) = max over hypotheses; kind guess = the argmax hypothesis (cpu wins ties with latency/network
when its evidence is >= half the score).
"""
from __future__ import annotations

import re
import warnings
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vigil.engine import roles
from vigil.engine.findings import Finding, SeriesShift
from vigil.engine.prepared import Prepared
from vigil.engine.stats import median, quantile
from vigil.model import EvidenceKind, FaultKind

ERR_OP = re.compile(r"error|exception|fault|fail", re.I)


role_of = roles.role


@dataclass
class Config:
    lookback_s: float = 30 * 60      # metric history used as baseline; its median is robust to an earlier incident
    post_s: float = 4 * 60           # window after onset
    min_base: int = 3                # minimum baseline points per series
    spread: str = "diff"             # noise of log x: "diff" = MAD of minute-to-minute changes / sqrt 2
                                     # (not inflated by an earlier incident's level shift); "mad" = plain MAD
    d_floor: float = 0.1             # minimum noise of log x (10 %) when computing z
    z_lo: float = 1.0                # significance gate: weight 0 at |z| <= z_lo, 1 at |z| >= z_hi
    z_hi: float = 3.0
    down_lat_weight: float = 0.5     # unexplained latency *drops* count half (less load also speeds things up)
    explain_by_callees: bool = True  # a server-latency move is also explained by the callees' server latency
    entry_score: float = 0.5         # fallback evidence for graph roots when the entry SLI fails unexplained
    net_fallback_weight: float = 0.5 # pod-level network fallback is ambiguous between sibling callees
    trace_lookback_s: float = 15 * 60
    trace_min_support: int = 5       # parent spans needed before and after
    trace_baseline: str = "minute_median"  # a call habit must hold in most baseline minutes ("pooled": overall)
    trace_min_minutes: int = 2
    weights: dict = field(default_factory=lambda: {"cpu": 1.0, "latency": 1.0, "network": 1.0,
                                                   "traffic": 1.0, "trace": 1.0, "entry": 1.0})


def _gate(z, c: Config):
    z = np.abs(np.nan_to_num(z))
    return np.clip((z - c.z_lo) / (c.z_hi - c.z_lo), 0.0, 1.0)


def _group_codes(cols: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """Integer group codes for rows keyed by one or more columns, numbered in order of first
    appearance, and the key of each code (a value, or a tuple for several columns). Much faster than
    factorizing a pandas MultiIndex."""
    parts = [pd.factorize(c, use_na_sentinel=False) for c in cols]
    combined = np.zeros(len(cols[0]), dtype=np.int64)
    for codes, uniq in parts:
        combined = combined * max(len(uniq), 1) + codes
    codes = pd.factorize(combined)[0]
    first = np.unique(codes, return_index=True)[1]
    cols_first = [np.asarray(u, dtype=object)[c[first]] for c, u in parts]   # each key's values, vectorised
    if len(parts) == 1:
        return codes, list(cols_first[0])
    return codes, list(zip(*cols_first, strict=True))


def _group_slices(codes: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The order that sorts rows by group code (stable), and each group's (code, start, end) in that
    order: one pass over numpy slices instead of pandas' per-group iteration."""
    order = np.argsort(codes, kind="stable")
    s = codes[order]
    cuts = np.flatnonzero(np.diff(s)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(s)]
    return order, [(int(s[a]), int(a), int(e)) for a, e in zip(starts, ends, strict=True)]


def series_effects(df: pd.DataFrame, keys: list[str], onset: float, c: Config, log: bool = True,
                   stat: str = "median") -> pd.DataFrame:
    """df long (keys..., ts, value) -> one row per series with d (log fold change) and z.
    log=False: the values are already on a log scale (d is then a plain difference)."""
    df = df[(df.ts > onset - c.lookback_s) & (df.ts <= onset + c.post_s)]
    df = df[np.isfinite(df.value.to_numpy(dtype=float))]
    out = []
    if df.empty:
        return pd.DataFrame(out, columns=[*keys, "d", "z", "base", "post"])
    codes, ukeys = _group_codes([df[k].to_numpy(object) for k in keys])
    order, groups = _group_slices(codes)
    values_all, ts_all = df["value"].to_numpy(float)[order], df["ts"].to_numpy(float)[order]
    for code, a, e in groups:
        k = ukeys[code]
        v, tsg = values_all[a:e], ts_all[a:e]
        post = tsg > onset
        b, p = v[~post], v[post]
        if len(b) < c.min_base or len(p) == 0:
            continue
        if np.all(b == b[0]) and np.all(p == b[0]):
            continue
        if stat == "mean":
            # rates / counts (often sparse): compare means, z from the baseline's sample variance;
            # nothing finer than one event (the smallest positive value seen) counts as a change.
            # The change need only hold for the first 2..all post points (scan; best |z| kept).
            pos = np.abs(b[b != 0])
            eps = max(0.02 * quantile(np.abs(b), 0.9), float(pos.min()) if len(pos) else 0.0) + 1e-9
            mb = float(np.mean(b))
            var = np.var(b, ddof=1) if len(b) > 1 else 0.0
            p_sorted = p[np.argsort(tsg[post])]
            best = None
            for kk in range(min(2, len(p_sorted)), len(p_sorted) + 1):
                mp = float(np.mean(p_sorted[:kk]))
                se = np.sqrt(var * (1 / kk + 1 / len(b)))
                z = (mp - mb) / max(se, 1e-9)
                if best is None or abs(z) > abs(best[1]):
                    best = (float(np.log((abs(mp) + eps) / (abs(mb) + eps))), z, mp)
            out.append((*(k if isinstance(k, tuple) else (k,)), best[0], best[1], mb, best[2]))
            continue
        if log:
            eps = 0.02 * quantile(np.abs(b), 0.9) + 1e-9
            lb, lp = np.log(np.abs(b) + eps), np.log(np.abs(p) + eps)
        else:
            lb, lp = b, p
        med = median(lb)
        if c.spread == "diff" and len(lb) >= 4:
            sd = 1.4826 * median(np.abs(np.diff(lb))) / np.sqrt(2)
        else:
            sd = 1.4826 * median(np.abs(lb - med))
        d = float(median(lp) - med)
        z = d / max(sd, c.d_floor)
        out.append((*(k if isinstance(k, tuple) else (k,)), d, z, float(median(b)), float(median(p))))
    return pd.DataFrame(out, columns=[*keys, "d", "z", "base", "post"])


def _mean(x):
    x = [v for v in x if v is not None and np.isfinite(v)]
    return float(np.mean(x)) if x else np.nan


def _parent_child(p: Prepared, onset: float, c: Config) -> pd.DataFrame:
    """Spans joined to their parents (the run's shared join), both inside the analysis window."""
    pc = p.span_parents
    if pc.empty:
        return pc
    lo, hi = onset - c.trace_lookback_s, onset + c.post_s
    keep = (pc["start"] > lo) & (pc["start"] <= hi) & (pc["p_start"] > lo) & (pc["p_start"] <= hi)
    return pc[keep.to_numpy()]


def _trace_evidence(pc: pd.DataFrame, onset: float, c: Config) -> dict:
    """Per service: how much its own call pattern changed.  For every span of service s, the set
    of operations of its direct children that s itself emits (client calls / internal steps).
    For each pair (A, B) of child ops seen together in the baseline, P(B | A) before vs after;
    a service whose spans stop making calls they used to make after A is where the code path
    changed (early return / exception)."""
    if pc.empty:
        return {}
    remote = pc[pc.res != pc.p_res]
    callee_of = remote.drop_duplicates(["p_res", "p_op", "res"]).groupby(["p_res", "p_op"]).res.agg(set).to_dict()
    ch = pc[pc.res == pc.p_res]  # calls/steps a service makes inside its own span
    if ch.empty:
        return {}
    ev = {}
    codes, glist = _group_codes([ch.p_res.to_numpy(object), ch.p_op.to_numpy(object)])
    order, groups = _group_slices(codes)
    op_all, key_all = ch.op.to_numpy(object)[order], ch.pkey.to_numpy()[order]
    pstart_all = ch.p_start.to_numpy(float)[order]
    for code, a, e in groups:
        ops, oi = np.unique(op_all[a:e].astype(str), return_inverse=True)
        if len(ops) < 2:
            continue
        res, pop = glist[code]
        keys, ki = np.unique(key_all[a:e], return_inverse=True)
        X = np.zeros((len(keys), len(ops)), dtype=np.float64)
        X[ki, oi] = 1.0
        post = np.zeros(len(keys), bool)
        post[ki] = pstart_all[a:e] > onset
        Xa, Xb = X[~post], X[post]
        if len(Xa) < c.trace_min_support or len(Xb) < c.trace_min_support:
            continue
        Ca, Cb = Xa.T @ Xa, Xb.T @ Xb          # co-occurrence counts; diagonal = parents calling A
        na, nb = np.diag(Ca)[:, None], np.diag(Cb)[:, None]
        p0 = (Ca + 0.5) / (na + 1)              # P(B | A) before
        p1 = (Cb + 0.5) / (nb + 1)              # P(B | A) after
        if c.trace_baseline == "minute_median":
            # the habit must hold in most baseline minutes, not only during an earlier incident
            pstart = np.zeros(len(keys))
            pstart[ki] = pstart_all[a:e]
            mins = np.floor(pstart[~post] / 60.0)
            per = []
            for mnt in np.unique(mins):
                Xm = Xa[mins == mnt]
                Cm = Xm.T @ Xm
                nm_ = np.diag(Cm)[:, None]
                per.append(np.where(nm_ >= 2, Cm / np.maximum(nm_, 1), np.nan))
            per = np.array(per)
            valid = np.sum(np.isfinite(per), axis=0)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN columns are expected here
                pm = np.nanmedian(per, axis=0)
            p0 = np.where(valid >= c.trace_min_minutes, np.minimum(p0, np.nan_to_num(pm, nan=0.0) + 0.5 / (na + 1)), 0.0)
        errlike = np.array([bool(ERR_OP.search(o)) for o in ops])
        # a vanishing call to an error handler is recovery from an earlier incident, not a fault
        ok = (na >= c.trace_min_support) & (nb >= c.trace_min_support) & (p0 >= 0.5) & ~errlike[None, :]
        np.fill_diagonal(ok, False)
        if not ok.any():
            continue
        se = np.sqrt(p0 * (1 - p0) / np.maximum(nb, 1))
        z = (p0 - p1) / np.maximum(se, 0.05)
        with np.errstate(divide="ignore", invalid="ignore"):
            val = np.where(ok, np.log(p0 / p1) * _gate(z, c), 0.0)
        i, j = np.unravel_index(np.argmax(val), val.shape)
        if val[i, j] > ev.get(res, (0.0, ""))[0]:
            ev[res] = (float(val[i, j]), f"{pop}: after {ops[i]} it calls {ops[j]} "
                                          f"{p0[i, j]:.0%}->{p1[i, j]:.0%} (n={int(nb[i, 0])})",
                       callee_of.get((res, ops[i]), set()))
    return ev


def _trace_edge_gaps(pc: pd.DataFrame, onset: float, c: Config, step: float = 60.0) -> pd.DataFrame:
    """Per-edge caller-vs-callee latency from spans: a caller's client span and the callee's server
    span directly under it.  Returns long (src, dst, ts, value) with value = median over the minute
    of log(client duration / server duration)."""
    j = pc[(pc.res != pc.p_res) & (pc.p_dur > 0) & (pc.dur > 0)]
    if j.empty:
        return pd.DataFrame(columns=["src", "dst", "ts", "value"])
    j = pd.DataFrame({"src": j.p_res, "dst": j.res, "value": np.log(j.p_dur / j.dur),
                      "ts": (np.floor(j.p_start / step) + 1) * step})
    return j.groupby(["src", "dst", "ts"], as_index=False).value.median()


def rank(p: Prepared, metrics: pd.DataFrame, edges: pd.DataFrame, onset: float,
         edge_metrics: pd.DataFrame | None = None, cfg: Config | None = None, debug: bool = False):
    """Ranked [(service, score, fault_kind_guess, evidence)], best first (debug: + per-hypothesis dict)."""
    c = cfg or Config()
    calls = edges[edges.kind == "calls"] if "kind" in edges else edges
    # prefer measured (trace) weights when the same edge appears twice
    calls = calls.sort_values("weight").drop_duplicates(["src", "dst"], keep="last")
    services = sorted(set(calls.src) | set(calls.dst))
    if not services:   # no call graph known: every resource with metrics stands alone
        services = sorted(map(str, metrics["resource"].unique()))
    callees, callers = defaultdict(list), defaultdict(list)
    for r in calls.itertuples():
        callees[r.src].append(r.dst)
        callers[r.dst].append(r.src)
    w_in = defaultdict(float)
    for r in calls.itertuples():
        w_in[r.dst] += r.weight
    share = {(r.src, r.dst): (r.weight / w_in[r.dst] if w_in[r.dst] > 0 else 1.0) for r in calls.itertuples()}

    metrics = metrics[(metrics.ts > onset - c.lookback_s) & (metrics.ts <= onset + c.post_s)]
    names = metrics.name.unique()
    roles = metrics.name.map({n: role_of(n) for n in names})
    m = metrics
    succ = roles == "success"
    if succ.any():
        # success ratios: work with the shortfall below the best recent level (an error ratio)
        sm = metrics[succ & (metrics.ts > onset - c.lookback_s) & (metrics.ts <= onset)]
        best = sm.groupby(["resource", "name"]).value.max().rename("best")
        ms = metrics[succ].join(best, on=["resource", "name"])
        ms = ms.assign(value=(ms.best - ms.value).clip(lower=0)).drop(columns="best")
        m = pd.concat([metrics[~succ], ms])
    mroles = m.name.map({n: role_of(n) for n in m.name.unique()})
    eff = pd.concat([series_effects(m[mroles != "load"], ["resource", "name"], onset, c),
                     series_effects(m[mroles == "load"], ["resource", "name"], onset, c, stat="mean")])
    eff["role"] = eff.name.map(role_of)
    R = {}  # (resource, role) -> (d, z) averaged over the role's series
    for (res, role), g in eff.groupby(["resource", "role"]):
        R[(res, role)] = (float(g.d.mean()), float(g.z.mean()))

    def get(res, role):
        return R.get((res, role), (np.nan, np.nan))

    gap = {}
    if edge_metrics is not None and not edge_metrics.empty:
        em = edge_metrics[(edge_metrics.ts > onset - c.lookback_s) & (edge_metrics.ts <= onset + c.post_s)]
        cl = em[em.side == "client"].sort_values("ts")
        sv = em[em.side == "server"].sort_values("ts")[["src", "dst", "ts", "value"]]
        step = float(np.median(np.diff(np.unique(cl.ts)))) if len(cl) > 2 else 60.0
        j = pd.merge_asof(cl, sv, on="ts", by=["src", "dst"], suffixes=("_c", "_s"),
                          direction="nearest", tolerance=step / 2)
        j = j[(j.value_c > 0) & (j.value_s > 0)]
        # log(caller-observed / callee-observed latency): the network + proxy share of the call
        j = j.assign(value=np.log(j.value_c) - np.log(j.value_s))
        ge = series_effects(j[["src", "dst", "ts", "value"]], ["src", "dst"], onset, c, log=False)
        for r in ge.itertuples():
            gap[(r.src, r.dst)] = (r.d * _gate(r.z, c), r.d, r.z)

    pc = _parent_child(p, onset, c)
    if not gap and not pc.empty:
        tg = _trace_edge_gaps(pc, onset, c)
        if not tg.empty:
            ge = series_effects(tg, ["src", "dst"], onset, c, log=False)
            for r in ge.itertuples():
                gap[(r.src, r.dst)] = (r.d * _gate(r.z, c), r.d, r.z)

    tr_ev = _trace_evidence(pc, onset, c)

    # entry SLI: success/error series on resources outside the call graph (or on roots)
    roots = [s for s in services if not callers[s]]
    entry = (0.0, "")
    for (res, role), (d, z) in R.items():
        if role == "success" and d > 0 and res not in services:   # shortfall grew
            v = c.entry_score * _gate(z, c)
            if v > entry[0]:
                entry = (v, f"{res} success rate {d:+.2f} (z={z:.1f})")
        if role == "errors" and res not in services and d > 0:
            v = c.entry_score * _gate(z, c)
            if v > entry[0]:
                entry = (v, f"{res} errors {d:+.2f} (z={z:.1f})")

    # fallback when no per-edge latency (mesh or traces): a caller whose client latency rose more
    # than any callee's server latency has a slow edge; the callee shared by all such callers (and
    # not called by unaffected ones) is the suspect.  Ambiguous between siblings, hence weighted.
    unexpl = {}
    if not gap:
        for u in services:
            dcu, zcu = get(u, "cli_lat")
            if not np.isfinite(dcu):
                continue
            dv = [get(v, "srv_lat")[0] for v in callees[u]]
            dv = [x for x in dv if np.isfinite(x)]
            unexpl[u] = max(0.0, dcu - max(dv + [0.0])) * _gate(zcu, c)

    def _other(u, v, side):
        """median gap on the other edges of the far endpoint (u's other out-edges / v's other in-edges)"""
        if side == "out":
            o = [gap[(u, x)][0] for x in callees[u] if x != v and (u, x) in gap]
        else:
            o = [gap[(x, v)][0] for x in callers[v] if x != u and (x, v) in gap]
        return max(0.0, float(np.median(o))) if o else 0.0

    rows, EV, ZS = [], {}, {}
    for s in services:
        ev = {}
        for role, hyp in (("cpu", "cpu"), ("mem", "memory"), ("disk", "disk")):   # saturation of its own resources
            d, z = get(s, role)
            if np.isfinite(d) and d > 0:
                ev[hyp] = (d * _gate(z, c), f"{role} x{np.exp(d):.1f} (z={z:.1f})")
                ZS[(s, hyp)] = float(z)
        ds_, zs_ = get(s, "srv_lat")
        if not np.isfinite(ds_):
            ds_, zs_ = get(s, "lat")
        dc_, _ = get(s, "cli_lat")
        dc_ = 0.0 if not np.isfinite(dc_) else dc_
        if c.explain_by_callees:
            # what its callees' own server latency moved (the largest move explains the most)
            dv = [get(v, "srv_lat")[0] for v in callees[s]]
            dv = [x for x in dv if np.isfinite(x)]
            if dv:
                up, down = max(max(dv), 0.0), min(min(dv), 0.0)
                dc_ = up if dc_ >= 0 and up > dc_ else (down if dc_ < 0 and down < dc_ else dc_)
        if np.isfinite(ds_):
            if ds_ > 0:
                self_ = max(0.0, ds_ - max(0.0, dc_))
            else:
                self_ = c.down_lat_weight * max(0.0, -ds_ - max(0.0, -dc_))
            ev["latency"] = (self_ * _gate(zs_, c),
                             f"server latency x{np.exp(ds_):.2f} vs own client latency x{np.exp(dc_):.2f} (z={zs_:.1f})")
        # edge gap = caller component + callee component: each edge's gap minus what the other
        # endpoint shows on its *other* edges (leave-one-out median), then averaged over s's edges
        gi = [g - _other(u, s, "out") for u in callers[s] if (u, s) in gap for g in [gap[(u, s)][0]]]
        go = [g - _other(s, v, "in") for v in callees[s] if (s, v) in gap for g in [gap[(s, v)][0]]]
        if gi or go:
            mi, mo = _mean(gi), _mean(go)
            best = max(np.nan_to_num(mi, nan=-9), np.nan_to_num(mo, nan=-9))
            if best > 0:
                side = "in" if np.nan_to_num(mi, nan=-9) >= np.nan_to_num(mo, nan=-9) else "out"
                ev["network"] = (best, f"caller-vs-callee latency gap on its {side}-edges x{np.exp(best):.1f} "
                                       f"not shared by the other endpoints' edges")
        if unexpl and callers[s] and all(u in unexpl for u in callers[s]):
            fb = min(unexpl[u] for u in callers[s]) - max(0.0, np.nan_to_num(get(s, "srv_lat")[0]))
            if fb > 0:
                ev["network"] = (c.net_fallback_weight * fb,
                                 f"all its callers' client latency rose x{np.exp(fb):.1f} beyond any callee's server latency")
        dl, zl = get(s, "load")
        own_drop = max(0.0, -dl) if np.isfinite(dl) else 0.0
        tv = []
        for v in callees[s]:
            dv, zv = get(v, "load")
            if np.isfinite(dv) and dv < 0:
                tv.append((share[(s, v)] * (max(0.0, -dv) - own_drop) * _gate(zv, c), v, dv))
        if tv:
            b = max(tv)
            if b[0] > 0:
                ev["traffic"] = (b[0], f"callee {b[1]} load x{np.exp(b[2]):.2f} while own load x{np.exp(-own_drop):.2f}")
        if s in roots and entry[0] > 0:
            ev["entry"] = entry
        EV[s] = ev
    # trace pattern change right after calling v is explained by whatever v itself shows
    for s, (val, txt, vs) in tr_ev.items():
        if s not in EV:
            continue
        expl = max([max([e[0] for e in EV[v].values()] + [tr_ev[v][0] if v in tr_ev else 0.0])
                    for v in vs if v in EV] + [0.0])
        if val - expl > 0:
            EV[s]["trace"] = (val - expl, txt + (f" (minus {expl:.2f} shown by the callee)" if expl > 0 else ""))
    for s in services:
        ev = {k: (v[0] * c.weights.get(k, 1.0), v[1]) for k, v in EV[s].items()}
        if ev:
            k = max(ev, key=lambda k: ev[k][0])
            score = ev[k][0]
        else:
            k, score = "none", 0.0
        kind = {"cpu": "cpu", "memory": "memory", "disk": "disk", "latency": "cpu/code(latency)", "network": "network_delay",
                "traffic": "code(exception/return)", "trace": "code(exception/return)",
                "entry": "code(exception/return)", "none": "unknown"}[k]
        if k in ("latency", "network") and "cpu" in ev and ev["cpu"][0] >= 0.5 * score:
            kind = "cpu"
        evid = "; ".join(f"{kk}={vv[0]:.2f}: {vv[1]}" for kk, vv in sorted(ev.items(), key=lambda kv: -kv[1][0]))
        rows.append((s, float(score), kind, evid, {kk: vv[0] for kk, vv in ev.items()},
                     {kk: ZS[(s, kk)] for kk in ev if (s, kk) in ZS}))
    rows.sort(key=lambda r: -r[1])
    if debug:
        return rows
    return [r[:4] for r in rows]


# -- the engine's analyzer interface ---------------------------------------------------------------
_KIND_CATEGORY = {"cpu": "cpu", "memory": "memory", "disk": "disk", "latency": "latency", "network": "network",
                  "traffic": "traffic", "trace": "trace-pattern", "entry": "entry"}
_FAULT_KIND = {"cpu": FaultKind.CPU, "memory": FaultKind.MEMORY, "disk": FaultKind.DISK,
               "network": FaultKind.NETWORK_DELAY, "latency": FaultKind.LATENCY, "traffic": FaultKind.ERROR,
               "trace": FaultKind.ERROR, "entry": FaultKind.ERROR}


class Local:
    """Hypothesis-specific local evidence per service (see the module's docstring)."""

    name = "local"
    family = "local"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["metrics"] or p.available["spans"] else "no metrics and no spans"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        edge_metrics = p.edge_metrics if len(p.edge_metrics) else None
        if edge_metrics is not None:
            edge_metrics = edge_metrics[["src", "dst", "side", "ts", "value"]]
        ranked = rank(p, p.metrics, p.edges, p.onset, edge_metrics=edge_metrics, cfg=config, debug=True)
        out = []
        for service, _score, _kind, evidence, parts, zs in ranked:
            for hyp, value in parts.items():
                if value <= 0:
                    continue
                signal = EvidenceKind.TRACE if hyp == "trace" else EvidenceKind.METRIC
                text = next((q.split(": ", 1)[1] for q in evidence.split("; ") if q.startswith(f"{hyp}=")), evidence)
                out.append(Finding(resource=service, family="local", hypothesis=f"local:{_KIND_CATEGORY[hyp]}",
                                   signal=signal, score=float(value), title=text, fault_kind=_FAULT_KIND[hyp],
                                   detail=SeriesShift(metric=hyp, z=float(zs.get(hyp, 0.0)))))
        return out
