"""Published RCA methods run by their own code (``rcaeval``, the RCAEval benchmark's package), on the
same observation Vigil gets, for ``vigil bench --peers``.

Each adapter does what RCAEval's own evaluation script (``main.py`` of phamquiluan/RCAEval) does
with one of its cases, only starting from Vigil's observation instead of a ``data.csv``:

- the metric frame is wide: a ``time`` column (epoch seconds) and one ``<service>_<metric>`` column
  per series, rows on the union of the series' timestamps (what ``RCAEval.utility.read_metrics``
  builds), sorted by time;
- ``*_latency-50`` columns are dropped, infinities become missing, gaps are forward-filled and what is
  still missing becomes 0;
- the normal part is the last ``LENGTH_ROWS`` rows before the inject time, the anomalous part the
  first ``LENGTH_ROWS`` rows from it (``--length 20``: ``20 * 60 // 2`` rows each), then
  ``*_latency-90`` is renamed ``*_latency``;
- the method is called as ``main.py`` calls it: ``func(data, inject_time, dataset=..., anomalies=None,
  dk_select_useful=False, sli=None, verbose=False, n_iter=<columns>)``, and its ``ranks`` (metric
  columns, best first) become services by the part before the first ``_``, first occurrence kept.

The inject time is the alert time. The observation's metric window is cut to the incident window the
engine analyses: history before the alert (``Settings.metric_lookback_s``) and ``Settings.after_s``
after it, stretched so that every series keeps ``Settings.min_after_samples`` samples after the alert
(a 5-minute series). Fault-free windows a source marks elsewhere are Vigil's notion, not the peers':
they are left out, as RCAEval's methods only know "before" and "after" the inject time.

``dataset`` matters to rcaeval only as ``None`` (no preprocessing at all, so ``time`` would be ranked
as a metric) or as the name of one of its own datasets with special handling (``sock-shop``,
``causalrca-sock-shop``); every other name takes the generic path that its RE1/RE2/RE3 runs use, so the
adapters pass the neutral ``GENERIC_DATASET``.

Service names in Vigil may contain ``_`` (PetShop's ``petInfo_AWS::DynamoDB::Table``); such a name is
given an alias without ``_`` in the column names and mapped back, so the split on ``_`` stays exact.
RCAEval also folds ``<svc>-db`` into ``<svc>`` when it scores, because its own labels name the service
and not its database; Vigil's labels name the resource itself, so no folding is done here."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vigil.agent.investigator import QUERY_TAIL_S
from vigil.engine import Observation, Settings
from vigil.errors import InputError

LENGTH_ROWS = 20 * 60 // 2          # main.py: --length 20 (minutes), "minutes -> seconds // 2" rows per side
GENERIC_DATASET = "vigil"
INSTALL_HINT = 'the peers need the rcaeval package: pip install -e ".[peers]" (or make install-peers)'
_FAILED = re.compile(r"^(\w+) failed \((.*)\); returning the unranked column order", re.M)


@dataclass(frozen=True)
class PeerSpec:
    name: str
    module: str          # where rcaeval defines it
    function: str
    about: str


# rcaeval 1.8.1's metric-based methods that install from PyPI on Python 3.11 and give answers here.
# Left out, each tried or read:
# - circa (and pc_pagerank etc., same PC step): causal-learn's fisherz raises "Data correlation matrix is
#   singular" on every development recording tried (Bookinfo, Eadro, PetShop: real series are collinear),
#   after 1.5-22 s per case; rcaeval's @rca wrapper then returns the unranked column order.
# - rcd: needs RCD's patched causal-learn (SkeletonDiscovery.local_skeleton_discovery), which rcaeval
#   only sets up in its Python 3.8 environment; with causal-learn from PyPI it raises at once.
# - e_diagnosis and ht: need sfr-pyrca, which pins scikit-learn < 1.2 and needs Java (javabridge).
# - causalrca, run, mscred: PyTorch; microcause: pingouin + tigramite.
# - the multi-source mmbaro/mmnsigma/mmcirca/mmrcd/pdiagnose: they read RCAEval's own pre-aggregated
#   log and trace series (logts.csv, tracets_*.csv), whose construction is not part of the package.
SPECS: dict[str, PeerSpec] = {s.name: s for s in (
    PeerSpec("baro", "RCAEval.e2e.baro", "baro",
             "BARO (Pham et al., FSE 2024): robust z of the anomalous part against the normal part"),
    PeerSpec("nsigma", "RCAEval.e2e", "nsigma", "N-Sigma: standard z of the anomalous part against the normal part"),
)}


@dataclass
class PeerAnswer:
    services: list[str]
    error: str | None = None


class Peer:
    """One published method: ``rank(obs)`` gives its service ranking for an observation."""

    def __init__(self, spec: PeerSpec, func: Callable, settings: Settings) -> None:
        self.spec = spec
        self.func = func
        self.settings = settings
        self.method = f"rcaeval-{spec.name}"

    def rank(self, obs: Observation) -> PeerAnswer:
        try:
            frame, aliases = peer_frame(obs, self.settings)
        except ValueError as exc:
            return PeerAnswer([], f"no metric frame: {exc}")
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                out = self.func(frame, obs.onset, dataset=GENERIC_DATASET, anomalies=None, dk_select_useful=False,
                                sli=None, verbose=False, n_iter=len(frame.columns) - 1)
        except Exception as exc:   # the peer's own failure: a miss, with the reason kept
            return PeerAnswer([], f"{type(exc).__name__}: {exc}"[:300])
        failed = _FAILED.search(captured.getvalue())
        if failed:                 # rcaeval's @rca wrapper swallowed an exception and returned the column order
            return PeerAnswer([], failed.group(2)[:300])
        ranks = (out or {}).get("ranks") or []
        return PeerAnswer(service_ranks([str(r) for r in ranks], aliases))


def load_peers(names: list[str], settings: Settings | None = None) -> list[Peer]:
    """The named peers, ready to run; a one-line InputError for an unknown name or a missing rcaeval."""
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        raise InputError(f"unknown peer {', '.join(unknown)}: choose from {', '.join(SPECS)}")
    os.environ.setdefault("MPLBACKEND", "Agg")     # rcaeval's rcd imports pyplot; never open a display
    peers = []
    for name in dict.fromkeys(names):
        spec = SPECS[name]
        try:
            module = importlib.import_module(spec.module)
        except ImportError as exc:
            raise InputError(f"{INSTALL_HINT} ({exc})") from None
        peers.append(Peer(spec, getattr(module, spec.function), settings or Settings()))
    return peers


def incident_metrics(obs: Observation, s: Settings) -> pd.DataFrame:
    """The observation's metrics in the incident window: ``metric_lookback_s`` before the alert, and
    ``after_s`` after it or up to each series' ``min_after_samples``-th sample, whichever is later."""
    full = obs.metrics
    if full.empty:
        return full
    ts = full["ts"].to_numpy(dtype=float)
    # the contiguous window observe() queried, without the marked baselines it may add from elsewhere
    m = full[(ts >= obs.onset - s.metric_lookback_s) & (ts < obs.onset + s.after_s + QUERY_TAIL_S)]
    if obs.baselines and not (m["ts"].to_numpy(dtype=float) < obs.onset).any():
        # nothing precedes the alert (the fault-free run was recorded apart): as in RCD's layout, the
        # marked run, re-timed to end just before the alert, is the "before" part the peers compare with
        marked = np.zeros(len(full), dtype=bool)
        for a, b in obs.baselines:
            marked |= (ts >= a) & (ts <= b)
        if marked.any():
            base = full[marked]
            bt = base["ts"].to_numpy(dtype=float)
            step = float(np.median(np.diff(np.unique(bt)))) if len(np.unique(bt)) > 1 else 1.0
            base = base[bt > bt.max() - s.metric_lookback_s].assign(ts=lambda d: d["ts"] + (obs.onset - step - bt.max()))
            m = pd.concat([base, m], ignore_index=True)
    ts = m["ts"].to_numpy(dtype=float)
    after = m[ts >= obs.onset]
    end = obs.onset + s.after_s
    if len(after):
        nth = (after.sort_values("ts").groupby(["resource", "name"], sort=False)["ts"]
               .nth(s.min_after_samples - 1))
        if len(nth):
            end = max(end, float(nth.max()))
    return m[ts <= end]


def _alias(resources: list[str]) -> dict[str, str]:
    """resource -> a column prefix without '_' (the peers cut service from metric at the first '_')."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for r in resources:
        base = r.replace("_", "~") if "_" in r else r
        a, i = base, 2
        while a in taken:
            a, i = f"{base}~{i}", i + 1
        out[r] = a
        taken.add(a)
    return out


def wide_frame(metrics: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Long metrics (resource, name, ts, value) as RCAEval's wide frame: ``time`` + ``<service>_<metric>``
    columns on the union of timestamps (missing stays NaN), sorted by time. Returns it and the
    alias -> resource map."""
    if metrics.empty:
        raise ValueError("the observation has no metrics in the incident window")
    res_codes, resources = pd.factorize(metrics["resource"].to_numpy(dtype=object))
    name_codes, names = pd.factorize(metrics["name"].to_numpy(dtype=object))
    col_codes, cols = pd.factorize(res_codes.astype(np.int64) * len(names) + name_codes)
    time_codes, times = pd.factorize(metrics["ts"].to_numpy(dtype=float))
    values = pd.to_numeric(metrics["value"], errors="coerce").to_numpy(dtype=float)
    grid = np.full((len(times), len(cols)), np.nan)
    keep = ~pd.DataFrame({"t": time_codes, "c": col_codes}).duplicated(keep="last").to_numpy()
    grid[time_codes[keep], col_codes[keep]] = values[keep]     # a repeated (time, series) keeps its last value
    order = np.argsort(times, kind="stable")
    alias = _alias([str(r) for r in resources])
    columns = [f"{alias[str(resources[c // len(names)])]}_{names[c % len(names)]}" for c in cols]
    wide = pd.DataFrame(grid[order], columns=columns)
    wide.insert(0, "time", np.asarray(times, dtype=float)[order])
    return wide, {a: r for r, a in alias.items()}


def main_py_frame(data: pd.DataFrame, inject_time: float, length_rows: int = LENGTH_ROWS) -> pd.DataFrame:
    """What RCAEval's main.py does to a case's metrics before calling a method."""
    data = data.loc[:, ~data.columns.str.endswith("_latency-50")]
    data = data.replace([np.inf, -np.inf], np.nan)
    data = data.ffill()
    data = data.fillna(0)
    normal_df = data[data["time"] < inject_time].tail(length_rows)
    anomal_df = data[data["time"] >= inject_time].head(length_rows)
    data = pd.concat([normal_df, anomal_df], ignore_index=True)
    return data.rename(columns={c: c.replace("_latency-90", "_latency") for c in data.columns
                                if c.endswith("_latency-90")})


def peer_frame(obs: Observation, s: Settings) -> tuple[pd.DataFrame, dict[str, str]]:
    wide, aliases = wide_frame(incident_metrics(obs, s))
    data = main_py_frame(wide, obs.onset)
    if not (data["time"] < obs.onset).any() or not (data["time"] >= obs.onset).any():
        raise ValueError("the incident window needs metrics both before and after the alert")
    return data, aliases


def service_ranks(ranks: list[str], aliases: dict[str, str]) -> list[str]:
    """Ranked ``<service>_<metric>`` names -> services, first occurrence kept (as RCAEval scores them)."""
    out: list[str] = []
    seen: set[str] = set()
    for r in ranks:
        prefix = r.split("_")[0]
        svc = aliases.get(prefix, prefix)
        if svc not in seen:
            seen.add(svc)
            out.append(svc)
    return out
