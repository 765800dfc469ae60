"""Hypothesis-specific local evidence on the call graph (metrics, per-edge latency, spans).

For every service and every fault hypothesis, the evidence that is *local* to the service: what its own
series show once what its callees and callers show is taken out.

**Series effects.** Every series is compared with its reference (``Prepared.reference``: a window marked
fault-free wherever it lies in time, else the recent past before the onset, minus the onset guard):

    d = median(log x, incident) - median(log x, reference)      (log fold change; load series: log of means)
    z = d / max(noise, d_floor),  noise = 1.4826 MAD(diff(log x)) / sqrt 2   (load series: Welch-type z)
    gate(z) = clip((|z| - z_lo) / (z_hi - z_lo), 0, 1)

The incident is the *early* part after the onset: the first minute, or ``window_samples`` samples of a
slower series, at most ``max_window_s`` (and at least ``min_after_samples`` samples). The first effects of a
fault name it best: later ones mix in the system's responses (retries, autoscaling, restarts).

**Hypotheses** per service s, each in log-fold-change units times the gate of the series used:

- cpu, memory, disk: its own resource series rose.
- latency: its server latency rose beyond what its own outgoing calls (client latency, per-edge client
  series) and its callees' server latency explain; drops count half.
- network: per call edge e = (u, v), the shift g_e of the caller-observed minus the callee-observed
  latency, log(client - server + typical server latency), from per-edge metrics (service-mesh style, both
  sides or the client side against the callee's own series), else from client/server span pairs (the
  caller's span minus the callee's span under it, call by call). Take out the far endpoint's common
  component (median g over its other edges, >= 0) and average over s's in-edges and over its
  out-edges: a delay at v shows on v's edges only. The slower side counts (10 % less when the other side
  was measured and stayed quicker: a delay often shows both ways). Calls after the onset that look like
  retransmission waits (under half of them slowed, or the slowed ones spread over tenfold and more)
  rather than a like slowdown of nearly all point at packet loss. An edge needs ``min_calls`` incident
  calls and one reference call (a sparse reference's spread is assumed). Without per-edge
  data: 0.5 x the smallest rise of s's callers' client latency that no callee's server latency explains.
- traffic: it stopped calling a callee while its own traffic held.
- trace pattern: inside its spans, a call that always followed another stopped (minus what the callee
  itself shows).
- entry: a user-facing success rate outside the graph fell (for graph roots; a fallback).

The score of a service is its strongest hypothesis; each hypothesis is a finding of its own.
"""
from __future__ import annotations

import re
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.engine import roles
from vigil.engine.findings import EdgeShift, Finding, SeriesShift
from vigil.engine.prepared import Prepared, series_step
from vigil.engine.stats import median, quantile, series_noise
from vigil.model import EvidenceKind, FaultKind

ERR_OP = re.compile(r"error|exception|fault|fail", re.I)


@dataclass(frozen=True)
class Config:
    lookback_s: float = 30 * 60      # recent-past reference (when no fault-free window is marked)
    window_s: float = 60.0           # incident: the first minute after the onset...
    window_samples: int = 4          # ...or this many samples of a slower series...
    max_window_s: float = 240.0      # ...up to four minutes
    min_reference: int = 3           # reference samples a series needs
    comparable_spreads: float = 3.0  # a fault-free run must match the recent past within this many spreads
    d_floor: float = 0.1             # minimum noise of log x (10 %) when computing z
    z_lo: float = 1.0                # significance gate: weight 0 at |z| <= z_lo, 1 at |z| >= z_hi
    z_hi: float = 3.0
    down_lat_weight: float = 0.5     # unexplained latency *drops* count half (less load also speeds things up)
    entry_score: float = 0.5         # fallback evidence for graph roots when the entry SLI fails unexplained
    net_fallback_weight: float = 0.5 # pod-level network fallback is ambiguous between sibling callees
    one_side_discount: float = 0.1   # a network slowdown on one side only (in or out) counts this much less
    span_lookback_s: float = 15 * 60 # spans: reference calls (when no fault-free window is marked)
    span_window_s: float = 120.0     # spans: incident calls, the two minutes after the onset
    gap_floor_ms: float = 1.0        # a call's network gap is read as log(gap + 1 ms)
    min_calls: int = 2               # incident calls an edge needs...
    min_reference_calls: int = 1     # ...and reference calls (a sparse reference's spread is assumed)
    sparse_spread: float = 0.5       # spread of log(gap) assumed when under five reference calls show it
    loss_share: float = 0.5          # slowed calls read as packet loss when fewer than this share slowed...
    loss_spread: float = 2.3026      # ...or their times spread over tenfold or more (retransmission backoff)
    trace_min_support: int = 5       # parent spans needed before and after (call patterns)
    trace_min_minutes: int = 2       # a call habit must hold in this many reference minutes


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


def incident_window(step: float, p: Prepared, c: Config) -> float:
    """Seconds after the onset a series' incident samples come from."""
    w = min(max(c.window_s, c.window_samples * step), c.max_window_s)
    return max(w, p.settings.min_after_samples * step)


def series_effects(df: pd.DataFrame, keys: list[str], p: Prepared, c: Config, log: bool = True,
                   stat: str = "median") -> pd.DataFrame:
    """df long (keys..., ts, value) -> one row per series with d (log fold change), z, the reference and
    incident medians and where the reference came from. log=False: the values are already on a log scale."""
    cols = [*keys, "d", "z", "base", "post", "ref"]
    df = df[np.isfinite(df["value"].to_numpy(dtype=float))]
    out = []
    if df.empty:
        return pd.DataFrame(out, columns=cols)
    s = p.settings
    codes, ukeys = _group_codes([df[k].to_numpy(object) for k in keys])
    order, groups = _group_slices(codes)
    values_all, ts_all = df["value"].to_numpy(float)[order], df["ts"].to_numpy(float)[order]
    for code, a, e in groups:
        k = ukeys[code]
        v, tsg = values_all[a:e], ts_all[a:e]
        step = series_step(tsg)
        inc_mask = (tsg >= p.onset) & (tsg <= p.onset + incident_window(step, p, c))
        q = v[inc_mask]
        if len(q) == 0:
            continue
        got = []
        refs = p.references(tsg, c.lookback_s, guard_s=s.onset_guard_s, min_recent=1)
        recent = next((v[m] for m, kind in refs if kind == "recent"), None)
        if recent is not None and len(recent) < c.min_reference:
            # the series has a recent past, too short to tell whether it changed at the onset: a
            # fault-free run alone would only say it differs from normal (a run recorded apart, with no
            # recent past at all, is judged by the fault-free run alone)
            continue
        for ref_mask, ref_kind in refs:
            b = v[ref_mask]
            if ref_kind == "marked" and recent is not None and not _comparable(b, recent, c, log):
                continue          # the fault-free run does not look like the minutes before the onset
            if len(b) < c.min_reference or (np.all(b == b[0]) and np.all(q == b[0])):
                continue
            got.append((*_effect(b, q, tsg[inc_mask], c, log, stat), ref_kind))
        if not got:
            continue
        # against a fault-free run *and* the recent past, a cause must stand out from both: the weaker
        # reading counts (none, when they disagree on the direction)
        d, z, base, post, ref_kind = min(got, key=lambda x: abs(x[1]))
        if len(got) > 1 and len({np.sign(x[1]) for x in got}) > 1:
            d, z = 0.0, 0.0
        out.append((*(k if isinstance(k, tuple) else (k,)), d, z, base, post,
                    "+".join(x[4] for x in got)))
    return pd.DataFrame(out, columns=cols)


def _comparable(marked: np.ndarray, recent: np.ndarray, c: Config, log: bool) -> bool:
    """Whether a window marked fault-free describes the series as it was just before the onset: the
    recent samples' median within three spreads of the marked samples' median. A fault-free run recorded
    long before may describe another traffic level or deployment; then the recent past alone judges."""
    if log:
        eps = 0.02 * quantile(np.abs(marked), 0.9) + 1e-9
        marked, recent = np.log(np.abs(marked) + eps), np.log(np.abs(recent) + eps)
    med = median(marked)
    spread = max(1.4826 * median(np.abs(marked - med)), c.d_floor)
    return abs(median(recent) - med) <= c.comparable_spreads * spread


def _effect(b: np.ndarray, q: np.ndarray, tq: np.ndarray, c: Config, log: bool, stat: str):
    """(d, z, reference level, incident level) of incident samples ``q`` (at times ``tq``) against
    reference samples ``b``."""
    if stat == "mean":
        # rates / counts (often sparse): compare means, z from the reference's sample variance;
        # nothing finer than one event (the smallest positive value seen) counts as a change.
        # The change need only hold for the first 2..all incident points (scan; best |z| kept).
        pos = np.abs(b[b != 0])
        eps = max(0.02 * quantile(np.abs(b), 0.9), float(pos.min()) if len(pos) else 0.0) + 1e-9
        mb = float(np.mean(b))
        var = np.var(b, ddof=1) if len(b) > 1 else 0.0
        q_sorted = q[np.argsort(tq)]
        best = None
        for kk in range(min(2, len(q_sorted)), len(q_sorted) + 1):
            mp = float(np.mean(q_sorted[:kk]))
            se = np.sqrt(var * (1 / kk + 1 / len(b)))
            z = (mp - mb) / max(se, 1e-9)
            if best is None or abs(z) > abs(best[1]):
                best = (float(np.log((abs(mp) + eps) / (abs(mb) + eps))), float(z), mb, mp)
        return best
    if log:
        eps = 0.02 * quantile(np.abs(b), 0.9) + 1e-9
        lb, lq = np.log(np.abs(b) + eps), np.log(np.abs(q) + eps)
    else:
        lb, lq = b, q
    d = float(median(lq) - median(lb))
    return d, d / max(series_noise(lb), c.d_floor), float(median(b)), float(median(q))


def _mean(x):
    x = [v for v in x if v is not None and np.isfinite(v)]
    return float(np.mean(x)) if x else np.nan


def _parent_child(p: Prepared, c: Config, after_s: float | None = None) -> pd.DataFrame:
    """Spans joined to their parents (the run's shared join), both inside the analysis window (reference
    and incident: ``span_window_s`` after the onset, or ``after_s``)."""
    pc = p.span_parents
    if pc.empty:
        return pc
    hi = p.onset + (c.span_window_s if after_s is None else after_s)
    ref, _ = p.reference(pc["p_start"].to_numpy(float), c.span_lookback_s, min_points=p.settings.min_events)
    keep = ref | ((pc["p_start"].to_numpy(float) >= p.onset) & (pc["p_start"].to_numpy(float) <= hi))
    return pc[keep]


def _trace_evidence(pc: pd.DataFrame, onset: float, c: Config) -> dict:
    """Per service: how much its own call pattern changed.  For every span of service s, the set
    of operations of its direct children that s itself emits (client calls / internal steps).
    For each pair (A, B) of child ops seen together in the reference, P(B | A) before vs after;
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
        # the habit must hold in most reference minutes, not only during an earlier incident
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


@dataclass
class EdgeGap:
    value: float          # gated shift (log units)
    d: float
    z: float
    loss_like: float      # 1.0 when its slowed calls look like retransmission waits (span pairs)
    source: str


def _metric_gaps(p: Prepared, c: Config, node: pd.DataFrame) -> dict[tuple[str, str], EdgeGap]:
    """Per-edge caller-vs-callee latency from per-edge series: both sides measured on the edge, or the
    caller's side against the callee's own series of the same name."""
    em = p.edge_metrics
    if em.empty:
        return {}
    cl = em[em["side"] == "client"]
    sv = em[em["side"] == "server"][["src", "dst", "name", "ts", "value"]]
    if len(cl):
        # a client-side series without a server side on the edge: the callee's own series of that name
        have = set(zip(sv["src"], sv["dst"], strict=True))
        lone = cl[[(a, b) not in have for a, b in zip(cl["src"], cl["dst"], strict=True)]]
        if len(lone):
            own = node[node["name"].isin(set(lone["name"])) & node["resource"].isin(set(lone["dst"]))]
            own = own.rename(columns={"resource": "dst"})
            pairs = lone[["src", "dst", "name"]].drop_duplicates()
            sv = pd.concat([sv, pairs.merge(own, on=["dst", "name"])[["src", "dst", "name", "ts", "value"]]],
                           ignore_index=True)
    if cl.empty or sv.empty:
        return {}
    cl = cl.sort_values("ts")
    sv = sv.sort_values("ts")
    step = float(np.median(np.diff(np.unique(cl["ts"])))) if cl["ts"].nunique() > 2 else 60.0
    j = pd.merge_asof(cl[["src", "dst", "name", "ts", "value"]], sv, on="ts", by=["src", "dst", "name"],
                      suffixes=("_c", "_s"), direction="nearest", tolerance=step / 2)
    j = j[np.isfinite(j["value_c"]) & np.isfinite(j["value_s"]) & (j["value_s"] >= 0)]
    if j.empty:
        return {}
    # the caller-observed minus the callee-observed latency: the network (and proxy) share of the call,
    # read as log(gap + floor) with the floor the edge's typical callee-side latency (a relative change
    # of the gap that does not move with the callee's own time, as the ratio client/server would)
    floor = j.groupby(["src", "dst", "name"])["value_s"].transform("median").to_numpy(float) + 1e-9
    j = j.assign(value=np.log(np.maximum(j["value_c"] - j["value_s"], 0.0) + floor))
    ge = series_effects(j[["src", "dst", "name", "ts", "value"]], ["src", "dst", "name"], p, c, log=False)
    out: dict[tuple[str, str], EdgeGap] = {}
    for (a, b), g in ge.groupby(["src", "dst"]):
        d, z = float(g["d"].mean()), float(g["z"].mean())
        out[(a, b)] = EdgeGap(d * float(_gate(z, c)), d, z, 0.0, "edge metrics")
    return out


def _sample_shifts(keys: list[np.ndarray], t: np.ndarray, values: np.ndarray, p: Prepared, c: Config) -> dict:
    """Shift of event samples (calls) per key: the reference samples' median and spread against the
    incident samples' median (a shift of most calls) and their upper quartile (a tail). The incident is
    the calls of the first ``span_window_s`` after the onset, or its first ``min_calls`` calls when traffic
    is that sparse; a sparse reference (under five calls) cannot tell its spread, which is then taken as
    ``sparse_spread``. Returns {key: (d, z, 1.0 when the calls after the onset look like retransmission
    waits)}."""
    if len(t) == 0:
        return {}
    ref, _ = p.reference(t, c.span_lookback_s, min_points=p.settings.min_events)
    after = (t >= p.onset) & (t <= p.onset + p.settings.after_s)
    out = {}
    codes, ukeys = _group_codes(keys)
    order, groups = _group_slices(codes)
    values, ref, after, t = values[order], ref[order], after[order], t[order]
    for code, a, e in groups:
        b = values[a:e][ref[a:e]]
        ta, ga = t[a:e][after[a:e]], values[a:e][after[a:e]]
        o = np.argsort(ta, kind="stable")
        ta, ga = ta[o], ga[o]
        n_inc = max(int(np.sum(ta <= p.onset + c.span_window_s)), min(c.min_calls, len(ga)))
        q = ga[:n_inc]
        if len(b) < c.min_reference_calls or len(q) < c.min_calls:
            continue
        mb = median(b)
        spread = 1.4826 * median(np.abs(b - mb)) if len(b) >= 5 else c.sparse_spread
        spread = max(spread, c.d_floor)
        se = spread * 1.2533 * np.sqrt(1.0 / len(q) + 1.0 / len(b))     # standard error of a median
        d_mid = float(median(q) - mb)
        d_tail = float(quantile(q, 0.75) - quantile(b, 0.75))
        # retransmission-like: packet loss delays a share of the calls by timeouts of very different
        # lengths (backoff) and leaves the rest as they were; a delay or a slow process slows nearly
        # every call by a like amount. Read over every call after the onset.
        slowed = ga[ga > b.max() + c.d_floor]
        loss = float(len(slowed) < c.loss_share * len(ga)
                     or (len(slowed) >= 2 and float(slowed.max() - slowed.min()) >= c.loss_spread))
        d, z = (d_mid, d_mid / se) if d_mid >= 0.5 * d_tail else (0.5 * d_tail, 0.5 * d_tail / se)
        out[ukeys[code]] = (d, float(z), loss)
    return out


def _span_gaps(pc: pd.DataFrame, p: Prepared, c: Config) -> dict[tuple[str, str], EdgeGap]:
    """Per-edge network gap from span pairs, call by call: the caller's span minus the callee's span
    directly under it, read as log(gap + floor)."""
    j = pc[(pc["res"] != pc["p_res"]) & (pc["p_dur"] > 0) & (pc["dur"] >= 0)]
    if j.empty:
        return {}
    gap = np.log(np.maximum(j["p_dur"].to_numpy(float) - j["dur"].to_numpy(float), 0.0) + c.gap_floor_ms)
    got = _sample_shifts([j["p_res"].to_numpy(object), j["res"].to_numpy(object)], j["p_start"].to_numpy(float),
                         gap, p, c)
    return {k: EdgeGap(d * float(_gate(z, c)), d, z, loss, "span pairs") for k, (d, z, loss) in got.items()}


def _span_latency(p: Prepared, c: Config) -> tuple[dict, dict]:
    """Latency from spans, for services without latency metrics: each service's server time (its spans
    entered from another service, or roots) and the time of the calls it makes to each other service
    (its span directly above the callee's), as log(1 + ms). Returns ({service: (d, z, retransmission-like)},
    {(caller, callee): (d, z)})."""
    sp = p.spans
    if sp.empty:
        return {}, {}
    res = sp["resource"].to_numpy(object)
    owner = dict(zip(sp["span_id"].to_numpy(object), res, strict=False))
    parent_res = np.array([owner.get(x) for x in sp["parent_id"].to_numpy(object)], dtype=object)
    entry = parent_res != res
    dur = np.log1p(np.maximum(sp["duration_ms"].to_numpy(float), 0.0))
    server = _sample_shifts([res[entry]], sp["start"].to_numpy(float)[entry], dur[entry], p, c)
    pc = p.span_parents
    j = pc[pc["res"] != pc["p_res"]]
    client = _sample_shifts([j["p_res"].to_numpy(object), j["res"].to_numpy(object)], j["p_start"].to_numpy(float),
                            np.log1p(np.maximum(j["p_dur"].to_numpy(float), 0.0)), p, c) if len(j) else {}
    return server, {k: (d, z) for k, (d, z, _) in client.items()}


def local_evidence(p: Prepared, c: Config):
    """Per service: {hypothesis: (value, text)}, the z of its resource series and of its latency, and
    per-service network details."""
    calls = p.edges
    # prefer measured (trace) weights when the same edge appears twice
    calls = calls.sort_values("weight").drop_duplicates(["src", "dst"], keep="last")
    metrics = p.metrics
    services = sorted(set(calls["src"]) | set(calls["dst"]))
    if not services:   # no call graph known: every resource with metrics stands alone
        services = sorted(map(str, metrics["resource"].unique())) if len(metrics) else []
        services += sorted(set(map(str, p.spans["resource"].unique())) - set(services)) if len(p.spans) else []
    callees, callers = defaultdict(list), defaultdict(list)
    for r in calls.itertuples():
        callees[r.src].append(r.dst)
        callers[r.dst].append(r.src)
    w_in = defaultdict(float)
    for r in calls.itertuples():
        w_in[r.dst] += r.weight
    share = {(r.src, r.dst): (r.weight / w_in[r.dst] if w_in[r.dst] > 0 else 1.0) for r in calls.itertuples()}

    R: dict[tuple[str, str], tuple[float, float]] = {}   # (resource, role) -> (d, z) of its typical series
    if len(metrics):
        names = metrics["name"].unique()
        role_of = {n: roles.role(str(n)) for n in names}
        mroles = metrics["name"].map(role_of)
        m = metrics
        succ = (mroles == "success").to_numpy()
        if succ.any():
            # success ratios: work with the shortfall below the best recent level (an error ratio)
            sm = metrics[succ & (metrics["ts"] <= p.onset).to_numpy()]
            best = sm.groupby(["resource", "name"])["value"].max().rename("best")
            ms = metrics[succ].join(best, on=["resource", "name"])
            ms = ms.assign(value=(ms["best"] - ms["value"]).clip(lower=0)).drop(columns="best")
            m = pd.concat([metrics[~succ], ms])
            mroles = m["name"].map(role_of)
        load = mroles.isin(roles.LOAD_ROLES).to_numpy()
        eff = pd.concat([series_effects(m[~load], ["resource", "name"], p, c),
                         series_effects(m[load], ["resource", "name"], p, c, stat="mean")])
        if len(eff):
            eff["role"] = eff["name"].map(role_of)
            eff.loc[eff["role"].isin(roles.LOAD_ROLES), "role"] = "load"
            # a role's evidence is what its typical series shows: the lower median by |z| (with two
            # series, the weaker one), so one odd series (a spiky rate) does not speak for the role
            eff = eff.assign(_az=eff["z"].abs()).sort_values("_az", kind="stable")
            for (res, role), g in eff.groupby(["resource", "role"], sort=False):
                r = g.iloc[(len(g) - 1) // 2]
                R[(res, role)] = (float(r["d"]), float(r["z"]))

    def get(res, role):
        return R.get((res, role), (np.nan, np.nan))

    pc = _parent_child(p, c)
    # per-edge series when there are any, else span pairs (their units differ: never mixed)
    gap = _metric_gaps(p, c, metrics)
    if not gap and not pc.empty:
        gap = _span_gaps(_parent_child(p, c, p.settings.after_s), p, c)
    # the client side of each edge alone: what a caller's own outgoing calls show
    client_d: dict[str, list[float]] = defaultdict(list)
    cl = p.edge_metrics[p.edge_metrics["side"] == "client"] if len(p.edge_metrics) else p.edge_metrics
    if len(cl):
        ce = series_effects(cl[["src", "dst", "name", "ts", "value"]], ["src", "dst", "name"], p, c)
        for r in ce.itertuples():
            client_d[r.src].append(float(r.d))
    tr_ev = _trace_evidence(pc, p.onset, c)
    # latency from spans where no latency series exists: server time of each service, and its calls
    span_srv, span_cli = _span_latency(p, c) if len(p.spans) else ({}, {})
    loss_like: dict[str, float] = {}  # service -> 1.0 when its slowed calls look like retransmissions
    for s_, (d, z, loss) in span_srv.items():
        if not any((s_, r) in R for r in roles.LATENCY_ROLES):
            R[(s_, "srv_lat")] = (d, z)
            loss_like[s_] = loss
    for (u, _v), (d, _z) in span_cli.items():
        if (u, "cli_lat") not in R:
            client_d[u].append(d)

    # entry SLI: success/error series on resources outside the call graph (or on roots)
    roots = [s for s in services if not callers[s]]
    entry = (0.0, "")
    for (res, role), (d, z) in R.items():
        if role in ("success", "errors") and d > 0 and res not in services:   # shortfall / errors grew
            v = c.entry_score * float(_gate(z, c))
            if v > entry[0]:
                entry = (v, f"{res} {'success rate' if role == 'success' else 'errors'} {d:+.2f} (z={z:.1f})")

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
            unexpl[u] = max(0.0, dcu - max(dv + [0.0])) * float(_gate(zcu, c))

    def _other(u, v, side):
        """The far endpoint's own common component: the median gap on its other edges, calls in and out
        (a delay on a pod's network slows both)."""
        far = u if side == "out" else v
        o = [gap[(far, x)].value for x in callees[far] if (far, x) != (u, v) and (far, x) in gap]
        o += [gap[(x, far)].value for x in callers[far] if (x, far) != (u, v) and (x, far) in gap]
        return max(0.0, float(np.median(o))) if o else 0.0

    EV: dict[str, dict[str, tuple[float, str]]] = {}
    ZS: dict[tuple[str, str], tuple[float, ...]] = {}   # (service, hypothesis) -> (d, z[, loss-like])
    NET: dict[str, EdgeShift] = {}
    for s in services:
        ev = {}
        for role, hyp in (("cpu", "cpu"), ("mem", "memory"), ("disk", "disk")):   # saturation of its own resources
            d, z = get(s, role)
            if np.isfinite(d) and d > 0:
                ev[hyp] = (d * float(_gate(z, c)), f"{role} x{np.exp(d):.1f} (z={z:.1f})")
                ZS[(s, hyp)] = (float(d), float(z))
        ds_, zs_ = get(s, "srv_lat")
        if not np.isfinite(ds_):
            ds_, zs_ = get(s, "lat")
        dc_, _ = get(s, "cli_lat")
        dc_ = 0.0 if not np.isfinite(dc_) else dc_
        if client_d.get(s):
            dc_ = max(dc_, max(client_d[s]))
        # what its callees' own server latency moved (the largest move explains the most)
        dv = [get(v, "srv_lat")[0] if np.isfinite(get(v, "srv_lat")[0]) else get(v, "lat")[0] for v in callees[s]]
        dv = [x for x in dv if np.isfinite(x)]
        if dv:
            up, down = max(max(dv), 0.0), min(min(dv), 0.0)
            dc_ = up if dc_ >= 0 and up > dc_ else (down if dc_ < 0 and down < dc_ else dc_)
        if np.isfinite(ds_):
            if ds_ > 0:
                self_ = max(0.0, ds_ - max(0.0, dc_))
            else:
                self_ = c.down_lat_weight * max(0.0, -ds_ - max(0.0, -dc_))
            ev["latency"] = (self_ * float(_gate(zs_, c)),
                             f"server latency x{np.exp(ds_):.2f} vs own client latency x{np.exp(dc_):.2f} (z={zs_:.1f})")
            ZS[(s, "latency")] = (float(ds_), float(zs_), loss_like.get(s, 0.0))
        # edge gap = caller component + callee component: each edge's gap minus what the other
        # endpoint shows on its *other* edges (leave-one-out median), then averaged over s's edges
        gi = [(u, gap[(u, s)].value - _other(u, s, "out")) for u in callers[s] if (u, s) in gap]
        go = [(v, gap[(s, v)].value - _other(s, v, "in")) for v in callees[s] if (s, v) in gap]
        if gi or go:
            # a delay on a service's network may slow its incoming calls, its outgoing ones or both: the
            # slower side counts, a little less when the other side was measured and stayed quicker
            mi, mo = _mean([x for _, x in gi]), _mean([x for _, x in go])
            sides = [x for x in (mi, mo) if np.isfinite(x)]
            best = max(sides) - c.one_side_discount * (max(sides) - max(min(sides), 0.0))
            if best > 0:
                side = "both" if gi and go and min(sides) > 0.5 * max(sides) else (
                    "in" if np.nan_to_num(mi, nan=-9) >= np.nan_to_num(mo, nan=-9) else "out")
                edges = {f"{u}->{s}": round(x, 3) for u, x in gi} | {f"{s}->{v}": round(x, 3) for v, x in go}
                gs = [gap[(u, s)] for u, _ in gi] + [gap[(s, v)] for v, _ in go]
                spans = [g for g in gs if g.source == "span pairs"]
                NET[s] = EdgeShift(side=side, edges=edges, source=", ".join(sorted({g.source for g in gs})),
                                   loss_like=float(np.mean([g.loss_like for g in spans])) if spans else 0.0)
                where = {"both": "calls to and from it", "in": "calls to it", "out": "calls it makes"}[side]
                ev["network"] = (best, f"caller-vs-callee latency gap on {where} x{np.exp(best):.1f}, "
                                       f"not shared by the other endpoints' edges")
        if unexpl and callers[s] and all(u in unexpl for u in callers[s]):
            fb = min(unexpl[u] for u in callers[s]) - max(0.0, np.nan_to_num(get(s, "srv_lat")[0]))
            if fb > 0:
                ev["network"] = (c.net_fallback_weight * fb,
                                 f"all its callers' client latency rose x{np.exp(fb):.1f} beyond any callee's server latency")
                NET[s] = EdgeShift(side="in", source="client latency")
        dl, _ = get(s, "load")
        own_drop = max(0.0, -dl) if np.isfinite(dl) else 0.0
        tv = []
        for v in callees[s]:
            dv_, zv = get(v, "load")
            if np.isfinite(dv_) and dv_ < 0:
                tv.append((share[(s, v)] * (max(0.0, -dv_) - own_drop) * float(_gate(zv, c)), v, dv_))
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
    return EV, ZS, NET


# -- the engine's analyzer interface ---------------------------------------------------------------
_HYPOTHESIS = {"cpu": "local:cpu", "memory": "local:memory", "disk": "local:disk", "latency": "local:latency",
               "network": "local:network", "traffic": "local:traffic", "trace": "local:trace-pattern",
               "entry": "local:entry"}
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
        EV, ZS, NET = local_evidence(p, config)
        out = []
        for service, ev in EV.items():
            for hyp, (value, text) in ev.items():
                if value <= 0:
                    continue
                kind = _FAULT_KIND[hyp]
                if hyp == "network":
                    detail = NET.get(service, EdgeShift())
                    if detail.loss_like >= 0.5:
                        kind = FaultKind.NETWORK_LOSS
                else:
                    d, z, *share = ZS.get((service, hyp), (0.0, 0.0))
                    detail = SeriesShift(metric=hyp, d=d, z=z, loss_like=share[0] if share else 0.0)
                out.append(Finding(resource=service, family="local", hypothesis=_HYPOTHESIS[hyp],
                                   signal=EvidenceKind.TRACE if hyp == "trace" else EvidenceKind.METRIC,
                                   score=float(value), title=text, fault_kind=kind, detail=detail))
        return out
