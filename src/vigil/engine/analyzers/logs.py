"""Log evidence: template mining (Drain3) and per-service template shifts between the baseline and
the incident window: new templates, templates whose share changed, error-level share."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.engine.findings import Finding, LogShift, TemplateCount
from vigil.engine.prepared import Prepared
from vigil.engine.stats import effect, null_max, poisson_z
from vigil.model import EvidenceKind, FaultKind

_ERROR_WORDS = re.compile(r"exception|error|fail|refused|timeout|timed out|unavailable|denied|panic|traceback",
                          re.I)


_EXCEPTION_WORDS = re.compile(r"exception|throw|traceback|stack ?trace|panic|segfault|fatal", re.I)


def _expected(b: np.ndarray, n_base: int, n_inc: int, op_b: np.ndarray, op_i: np.ndarray) -> np.ndarray:
    """Expected incident count of each template from a reference window. A template whose lines belong
    to one span operation is expected in proportion to that operation's requests (a code path that
    stops logging while requests keep coming is a broken path); the rest in proportion to the service's
    log volume (a traffic change moves every template alike and is not a shift)."""
    by_volume = (b + 0.5) / (n_base + 0.5 * len(b)) * n_inc if n_base > 0 else np.full(len(b), 0.5)
    by_requests = (b + 0.5) / (op_b + 0.5) * op_i
    return np.where((op_b > 0) & (op_i >= 0) & np.isfinite(op_i), by_requests, by_volume)


def _z(i: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return np.array([poisson_z(x, e) for x, e in zip(i, expected, strict=False)])


def _span_operations(p: Prepared, lg: pd.DataFrame, masks: dict[str, np.ndarray]):
    """Operation of each log line's span (same service), and span counts per (service, operation) in
    each window."""
    sp = p.spans
    if sp.empty or "span_id" not in lg.columns:
        return None, None
    key = sp[["resource", "span_id", "operation"]].drop_duplicates(["resource", "span_id"])
    ops = lg[["resource", "span_id"]].merge(key, on=["resource", "span_id"], how="left")["operation"].to_numpy()
    t = sp["start"].to_numpy(dtype=float)
    counts = {}
    for name, fn in masks.items():
        m = fn(t)
        counts[name] = sp[m].groupby(["resource", "operation"]).size()
    return ops, counts


def _op_count(op_counts, window: str, resource: str, ops: list) -> np.ndarray:
    """Requests of each template's operation in a window; -1 where a template has no operation."""
    if op_counts is None:
        return np.full(len(ops), -1.0)
    cnt = op_counts[window]
    return np.array([float(cnt.get((resource, o), 0)) if o is not None else -1.0 for o in ops])


@dataclass(frozen=True)
class Config:
    pass


class Logs:
    """Aggregate log template shifts: scored only where request patterns cannot be built (no spans tie
    logs to requests); otherwise the patterns family already reads the same logs."""

    name = "logs"
    family = "logs"
    Config = Config

    def missing(self, p: Prepared) -> str | None:
        return None if p.available["logs"] else "no logs"

    def analyze(self, p: Prepared, config: Config) -> list[Finding]:
        return analyze_logs(p)


def analyze_logs(p: Prepared) -> list[Finding]:
    s = p.settings
    lg = p.logs
    if lg.empty:
        return []
    lg = lg.assign(_row=np.arange(len(lg)), _lvl=p.log_levels)
    # An alert fires after the fault began: evidence from shortly before it belongs to the incident,
    # and the reference windows stop short of it.
    start = p.onset - s.onset_guard_s
    windows = {
        "base": lambda t: p.reference(t, s.event_lookback_s, guard_s=s.onset_guard_s, min_points=s.min_events)[0],
        "recent": lambda t: (t >= p.onset - s.event_lookback_s) & (t < start),
        "inc": lambda t: (t >= start) & (t <= p.onset + s.after_s),
    }
    ts = lg["ts"].to_numpy(dtype=float)
    base_mask, recent_mask, inc_mask = (windows[w](ts) for w in ("base", "recent", "inc"))
    if not inc_mask.any():
        return []
    keep = base_mask | recent_mask | inc_mask
    lg = lg[keep].reset_index(drop=True)
    base_mask, recent_mask, inc_mask = base_mask[keep], recent_mask[keep], inc_mask[keep]
    separate_recent = bool((recent_mask & ~base_mask).any())
    tpl_ids, level = p.template_ids(lg["_row"].to_numpy()), lg["_lvl"].to_numpy()
    line_ops, op_counts = _span_operations(p, lg, windows)
    frame = pd.DataFrame({"resource": lg["resource"].to_numpy(), "tpl": tpl_ids, "base": base_mask,
                          "recent": recent_mask, "inc": inc_mask, "err": (level == "ERROR") | (level == "WARN"),
                          "op": line_ops if line_ops is not None else None})
    text = p.templater.text
    errorish_tpl = {int(t): bool(_ERROR_WORDS.search(text(t))) for t in np.unique(tpl_ids)}

    per_res: dict[str, pd.DataFrame] = {}
    elevated: set[tuple[str, int]] = set()
    all_counts = frame.groupby(["resource", "tpl"], sort=False).agg(
        b=("base", "sum"), r=("recent", "sum"), i=("inc", "sum"), err=("err", "max"))
    totals = frame.groupby("resource", sort=False)[["base", "recent", "inc"]].sum()
    # the span operation each template's lines belong to (when one operation holds most of them)
    pairs = frame.dropna(subset=["op"]).groupby(["resource", "tpl", "op"]).size()
    op_of: dict[tuple[str, int], str] = {}
    if len(pairs):
        top = pairs.sort_values(ascending=False).groupby(level=[0, 1]).head(1)
        total = pairs.groupby(level=[0, 1]).sum()
        op_of = {(str(rs), int(t)): str(o) for (rs, t, o), n in top.items() if n >= 0.5 * total[(rs, t)]}
    for resource, c in all_counts.groupby(level=0, sort=False):
        n_base, n_recent, n_inc = (int(totals.at[resource, k]) for k in ("base", "recent", "inc"))
        if n_base + n_inc < s.min_events or n_base + n_recent < s.min_events:
            continue    # too few lines, or nothing logged before the onset to compare against
        c = c.droplevel(0)
        i, b, r = c["i"].to_numpy(float), c["b"].to_numpy(float), c["r"].to_numpy(float)
        ops = [op_of.get((str(resource), int(t))) for t in c.index]

        op_b, op_r, op_i = (_op_count(op_counts, w, str(resource), ops) for w in ("base", "recent", "inc"))
        op_b = np.where(op_b < 0, 0.0, op_b)
        op_r = np.where(op_r < 0, 0.0, op_r)
        expected = _expected(b, n_base, n_inc, op_b, op_i)
        z = _z(i, expected)
        if separate_recent and n_recent >= s.min_events:
            # new relative to both the fault-free baseline and the minutes just before the onset
            zr = _z(i, _expected(r, n_recent, n_inc, op_r, op_i))
            z = np.where(z > 0, np.minimum(z, zr), np.maximum(z, zr))
        per_request = (op_b > 0) & (op_i >= 0)
        c["z"] = z
        c["error"] = c["err"].to_numpy(bool) | np.array([errorish_tpl.get(int(t), False) for t in c.index])
        c["expected"] = expected
        c["size"] = [effect(e, x) for e, x in zip(expected, i, strict=False)]
        # error lines count fully; a shift in ordinary lines is weaker evidence unless it is per
        # request (the same requests stopped or started logging it), and only as big as the change
        c["per_request"] = per_request
        c["weight"] = np.where(c["error"] & (z > 0), 1.0, np.where(per_request, 1.0, 0.5) * c["size"].to_numpy())
        per_res[str(resource)] = c
        for t in c.index[(c["error"].to_numpy()) & (z >= 2.0) & (i >= 2)]:
            elevated.add((str(resource), int(t)))

    # Hundreds of templates are tested at once: only shifts beyond what the largest of that many null
    # z-scores would reach count (the expected maximum of m half-normal draws is about sqrt(2 ln m)).
    m = sum(len(c) for c in per_res.values())
    bar = null_max(m)
    for c in per_res.values():
        c["weighted"] = np.maximum(np.abs(c["z"].to_numpy()) - bar, 0.0) * c["weight"].to_numpy()
    origin = _error_origins(lg, frame, elevated)
    bodies = lg["body"].astype(str).to_numpy()
    tss = lg["ts"].to_numpy(dtype=float)
    findings: list[Finding] = []
    for resource, c in per_res.items():
        c = c.sort_values("weighted", ascending=False)
        top = c.iloc[0]
        score = float(top["weighted"])
        if score <= 0:
            continue
        tid = int(c.index[0])
        z, b, i = float(top["z"]), int(top["b"]), int(top["i"])
        kind = ("new" if b == 0 else "more") if z > 0 else ("gone" if i == 0 else "fewer")
        is_err = bool(top["error"]) and z > 0
        votes, traces = origin.get(resource, (0, 0))
        share = votes / traces if traces else 1.0
        if is_err and traces:
            score *= 0.5 + 0.5 * share     # its errors mostly follow another service's errors: likely inherited
        g = frame[frame["resource"] == resource]
        rows = g.index[(g["tpl"].to_numpy() == tid) & (g["inc"].to_numpy() if i else True)][:3]
        samples = [bodies[p][:400] for p in rows]
        templates = [TemplateCount(template=text(int(t))[:300],
                                   shift=("new" if r.b == 0 else "more") if r.z > 0 else ("gone" if r.i == 0 else "fewer"),
                                   before=int(r.b), just_before=int(r.r), after=int(r.i),
                                   expected=round(r.expected, 2), error=bool(r.error), z=round(float(r.z), 2))
                     for t, r in zip(c.index[:5], c.iloc[:5].itertuples(), strict=False)]
        detail = LogShift(templates=templates, samples=samples, shift=kind, per_request=bool(top["per_request"]),
                          exception=bool(_EXCEPTION_WORDS.search(text(tid) + " ".join(samples[:1]))),
                          error_origin_traces=votes, error_traces=traces, lines_before=int(g["base"].sum()),
                          lines_after=int(g["inc"].sum()))
        hyp = "errors" if is_err else "template"
        findings.append(Finding(
            resource=resource, family="logs", hypothesis=hyp, signal=EvidenceKind.LOG, score=score,
            title=f"log template {kind}: '{text(tid)[:120]}' ({b} before, {i} after)",
            fault_kind=log_kind(hyp, detail)[0], first_ts=float(tss[rows[0]]) if len(rows) and i else None,
            detail=detail))
    return findings


def _error_origins(lg: pd.DataFrame, frame: pd.DataFrame, elevated: set[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """For traces carrying newly elevated error lines: in how many is a service's error the first one
    (the origin), out of how many traces it logged such an error in."""
    if not elevated:
        return {}
    key = list(zip(frame["resource"].astype(str), frame["tpl"].astype(int), strict=False))
    hit = np.array([k in elevated for k in key]) & frame["inc"].to_numpy() & (lg["trace_id"].fillna("").astype(str)
                                                                               .str.len().to_numpy() > 0)
    if not hit.any():
        return {}
    ev = pd.DataFrame({"trace": lg["trace_id"].to_numpy()[hit], "resource": frame["resource"].to_numpy()[hit],
                       "ts": lg["ts"].to_numpy(dtype=float)[hit]}).sort_values("ts")
    first = ev.groupby("trace")["resource"].first().value_counts()
    seen = ev.drop_duplicates(["trace", "resource"])["resource"].value_counts()
    return {str(r): (int(first.get(r, 0)), int(n)) for r, n in seen.items()}


def log_kind(hypothesis: str, d: LogShift) -> tuple[FaultKind, str]:
    """What a log shift says about the fault."""
    if hypothesis == "errors" and d.exception:
        return FaultKind.ERROR, "it started throwing exceptions (new or more frequent exception logs)"
    if hypothesis == "errors":
        return FaultKind.LOGIC, ("it reports a wrong value or state without an exception (new or more "
                                 "frequent application error logs)")
    if d.per_request and d.shift in ("gone", "fewer"):
        return FaultKind.ERROR, ("a code path stops midway: requests keep arriving but the log line that "
                                 "follows stops, as when an exception aborts it")
    return FaultKind.LOGIC, "its log pattern changed (templates appeared or vanished) without errors"
