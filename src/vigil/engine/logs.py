"""Log evidence: template mining (Drain3) and per-service template shifts between the baseline and
the incident window: new templates, templates whose share changed, error-level share."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from vigil.engine.findings import Finding
from vigil.engine.observation import Observation, Settings
from vigil.engine.stats import effect, poisson_z
from vigil.model import EvidenceKind

logging.getLogger("drain3").setLevel(logging.WARNING)

_MASKS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?Z?"), "<TS>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<TS>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<UUID>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<IP>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b"), "<HEX>"),
    (re.compile(r"(?<![#\w.])[-+]?\d+(?:\.\d+)?(?![\w.])"), "<NUM>"),   # keep '#123' (source line ids)
]
_ERROR_WORDS = re.compile(r"exception|error|fail|refused|timeout|timed out|unavailable|denied|panic|traceback",
                          re.I)


def mask(line: str) -> str:
    for pattern, repl in _MASKS:
        line = pattern.sub(repl, line)
    return line


@dataclass
class Templates:
    """Template id per log line, and the template text per id."""

    ids: np.ndarray
    text: dict[int, str]


def mine_templates(bodies: pd.Series) -> Templates:
    config = TemplateMinerConfig()
    config.drain_sim_th = 0.6
    config.drain_depth = 4
    config.parametrize_numeric_tokens = True
    miner = TemplateMiner(config=config)
    masked = bodies.astype(str).map(lambda b: mask(b[:1000]))
    uniq, inverse = np.unique(masked.to_numpy(dtype=str), return_inverse=True)
    cluster_of = np.empty(len(uniq), dtype=np.int64)
    for i, line in enumerate(uniq):
        cluster_of[i] = miner.add_log_message(line)["cluster_id"]
    text = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return Templates(ids=cluster_of[inverse], text=text)


def analyze_logs(obs: Observation, s: Settings) -> list[Finding]:
    lg = obs.logs
    if lg.empty:
        return []
    ts = lg["ts"].to_numpy(dtype=float)
    base_mask = obs.in_baseline(ts, s.event_lookback_s, min_marked=s.min_events)
    inc_mask = (ts >= obs.onset) & (ts <= obs.onset + s.after_s)
    keep = base_mask | inc_mask
    if not inc_mask.any():
        return []
    lg = lg[keep]
    base_mask, inc_mask = base_mask[keep], inc_mask[keep]
    tpl = mine_templates(lg["body"])
    level = lg["level"].fillna("").astype(str).str.upper().to_numpy()
    is_err_line = (level == "ERROR") | (level == "WARN")
    frame = pd.DataFrame({"resource": lg["resource"].to_numpy(), "tpl": tpl.ids, "base": base_mask,
                          "inc": inc_mask, "err": is_err_line})
    findings: list[Finding] = []
    bodies = lg["body"].astype(str).to_numpy()
    tss = lg["ts"].to_numpy(dtype=float)
    for resource, g in frame.groupby("resource", sort=False):
        B, I = int(g["base"].sum()), int(g["inc"].sum())
        if B + I < s.min_events:
            continue
        counts = g.groupby("tpl").agg(b=("base", "sum"), i=("inc", "sum"), err=("err", "max"))
        K = len(counts)
        best: list[tuple[float, str, int, dict]] = []
        for tid, row in counts.iterrows():
            b, i = int(row["b"]), int(row["i"])
            if B > 0:
                expected = (b + 0.5) / (B + 0.5 * K) * I
            else:
                expected = 0.5
            z = poisson_z(i, expected)
            text = tpl.text.get(int(tid), "")
            errorish = bool(row["err"]) or bool(_ERROR_WORDS.search(text))
            # error lines count fully; a shift in ordinary lines is weaker evidence, and only as big
            # as the change is (a doubling or more counts fully)
            size = effect(expected, i)
            if z > 0:
                weight = 1.0 if errorish else 0.5 * size
                kind = "new" if b == 0 else "more"
            else:
                weight, kind = 0.5 * size, ("gone" if i == 0 else "fewer")
            best.append((abs(z) * weight, kind, int(tid), {"before": b, "after": i, "expected": round(expected, 2),
                                                           "error": errorish, "z": round(z, 2)}))
        best.sort(key=lambda x: -x[0])
        if not best or best[0][0] <= 0:
            continue
        # error-level share
        eb, ei = int((g["err"] & g["base"]).sum()), int((g["err"] & g["inc"]).sum())
        z_err = poisson_z(ei, (eb + 0.5) / (B + 1) * I) if I else 0.0
        score, kind, tid, info = best[0]
        top_err = info["error"] and kind in ("new", "more")
        if z_err > score:
            score = z_err
            top_err = True
        idx = np.nonzero((g["tpl"].to_numpy() == tid) & g["inc"].to_numpy())[0]
        rows = g.index[idx] if len(idx) else g.index[np.nonzero(g["tpl"].to_numpy() == tid)[0]]
        pos = lg.index.get_indexer(rows[:3])
        samples = [bodies[p][:400] for p in pos if p >= 0]
        first = float(tss[pos[0]]) if len(pos) and pos[0] >= 0 and info["after"] else None
        templates = [{"template": tpl.text.get(t, "")[:300], "shift": k, **inf} for _, k, t, inf in best[:5]]
        findings.append(Finding(
            resource=str(resource), signal=EvidenceKind.LOG, category="errors" if top_err else "template",
            score=score,
            title=(f"log template {kind}: '{tpl.text.get(tid, '')[:120]}' ({info['before']} before, "
                   f"{info['after']} after)"),
            first_ts=first,
            detail={"templates": templates, "samples": samples, "error_lines_before": eb, "error_lines_after": ei,
                    "lines_before": B, "lines_after": I, "error_share_z": round(z_err, 2)}))
    return findings
