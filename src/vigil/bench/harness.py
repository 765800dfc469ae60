"""``vigil bench``: finds every labeled case under the given folders, imports each recording into a
private in-memory store, runs the engine (and the published peers asked for, ``bench.peers``) on each
case, and scores them.

Labels are read here and nowhere else: the engine is given only the alert (a time, and for PetShop
the alerting node and metric)."""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from vigil.agent.investigator import observe
from vigil.bench.peers import Peer, load_peers
from vigil.engine import Settings, analyze
from vigil.engine.confidence import Calibration, fit_calibration, top_features
from vigil.engine.observation import Observation
from vigil.engine.prepared import in_windows
from vigil.errors import InputError
from vigil.ingest import Recording, discover
from vigil.store.telemetry import TelemetryStore

METHODS = ("vigil",)
CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.01)
# Vigil with a signal taken away: what a team that lacks it would get
ABLATIONS = ("metrics-only", "no-topology", "no-traces", "no-logs")


def ablate(obs: Observation, name: str) -> Observation:
    """The observation without the signals ablation ``name`` takes away (the input is not changed)."""
    if name not in ABLATIONS:
        raise InputError(f"unknown ablation {name!r}: choose from {', '.join(ABLATIONS)}")
    out = dataclasses.replace(obs)
    if name in ("metrics-only", "no-traces"):
        out.spans = obs.spans.iloc[0:0]
    if name in ("metrics-only", "no-logs"):
        out.logs = obs.logs.iloc[0:0]
    if name in ("metrics-only", "no-topology"):
        out.topology = obs.topology.model_copy(update={"edges": []})
    if name == "metrics-only":
        out.changes = obs.changes.iloc[0:0]
    return out


def reshape(obs: Observation, reference_gap_s: float = 0.0, horizon_s: float = 0.0,
            lookback_s: float = 3600.0, guard_s: float = 60.0) -> Observation:
    """The same incident as another recording would hold it. ``reference_gap_s``: the history before
    the alert becomes a fault-free run recorded that long before (its samples moved back in time and
    marked fault-free; nothing precedes the alert any more), as in recordings that keep the normal run
    apart from the incident. The last ``guard_s`` before the alert (where a late alert's fault has
    often begun already) is dropped, not declared fault-free. A recording's own marked runs stay as they
    are (PetShop's lie months apart already). ``horizon_s``: the recording ends that long after the alert. Labels are not
    involved: only times move."""
    out = dataclasses.replace(obs)
    onset = obs.onset
    if reference_gap_s > 0:
        windows = []

        def move(df, col):
            if df.empty:
                return df
            t = df[col].to_numpy(float)
            own = in_windows(t, obs.baselines)
            before = (t < onset - guard_s) & (t >= onset - lookback_s) & ~own
            if before.any():
                windows.append((float(t[before].min()) - reference_gap_s, float(t[before].max()) - reference_gap_s))
            keep = (t >= onset) | before | own
            df = df[keep].copy()
            df[col] = np.where(before[keep], df[col] - reference_gap_s, df[col])
            return df

        out.metrics = move(obs.metrics, "ts")
        out.logs = move(obs.logs, "ts")
        out.spans = move(obs.spans, "start")
        out.baselines = list(obs.baselines) + (
            [(min(a for a, _ in windows), max(b for _, b in windows) + 1)] if windows else [])
    if horizon_s > 0:
        end = onset + horizon_s
        out.metrics = out.metrics[out.metrics["ts"] <= end]
        out.logs = out.logs[out.logs["ts"] <= end]
        out.spans = out.spans[out.spans["start"] <= end]
    return out


@dataclass
class CaseResult:
    case: str
    dataset: str
    method: str
    fault: str
    truth: str
    ranks: list[str]
    seconds: float
    cpu_seconds: float = 0.0              # CPU time of the process (all threads): what load on a shared machine hides
    fault_kind: str | None = None
    true_fault_kind: str | None = None
    kind_of_truth: str | None = None      # the fault kind the method gave the true root cause, if ranked
    confidence: float | None = None
    inconclusive: bool | None = None
    scores: list[float] = field(default_factory=list)
    features: list[float] = field(default_factory=list)   # the top-1 confidence's features (engine.confidence)
    error: str | None = None              # a peer that failed on this case (its ranking is then empty)

    def hit(self, k: int) -> float:
        """Whether the truth is in the top k; when it shares its score with others across the k-th place,
        the chance that an arbitrary order of the tied ones puts it there (a tie broken by name is no hit)."""
        if self.truth not in self.ranks:
            return 0.0
        if len(self.scores) != len(self.ranks):
            return float(self.truth in self.ranks[:k])
        mine = self.scores[self.ranks.index(self.truth)]
        above = sum(v > mine for v in self.scores)
        tied = sum(v == mine for v in self.scores)
        return 0.0 if above >= k else min((k - above) / tied, 1.0)


@dataclass
class BenchReport:
    results: list[dict] = field(default_factory=list)
    by_fault: list[dict] = field(default_factory=list)
    calibration: list[dict] = field(default_factory=list)
    calibration_out_of_recording: list[dict] = field(default_factory=list)
    cases: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    speed: list[dict] = field(default_factory=list)      # Vigil's median time over rcaeval-baro's, per dataset
    peak_rss_mb: float = 0.0
    total_s: float = 0.0
    total_cpu_s: float = 0.0

    def contract(self) -> dict:
        """The stable JSON shape dashboards and CI read (plus detail sections)."""
        return {"results": self.results, "peak_rss_mb": self.peak_rss_mb, "total_s": round(self.total_s, 2),
                "total_cpu_s": round(self.total_cpu_s, 2),
                "by_fault": self.by_fault, "calibration": self.calibration,
                "calibration_out_of_recording": self.calibration_out_of_recording, "cases": self.cases,
                "warnings": self.warnings, **({"speed_vs_rcaeval_baro": self.speed} if self.speed else {})}


def _score(rows: list[CaseResult]) -> dict:
    n = len(rows)
    ac = {k: sum(r.hit(k) for r in rows) / n for k in range(1, 6)}
    kinds = [r for r in rows if r.true_fault_kind and r.method.startswith("vigil")]
    secs = [r.seconds for r in rows]
    return {"cases": n, "ac@1": round(ac[1], 4), "ac@3": round(ac[3], 4), "ac@5": round(ac[5], 4),
            "avg@5": round(sum(ac.values()) / 5, 4),
            "fault_kind_accuracy": (round(sum(r.kind_of_truth == r.true_fault_kind for r in kinds) / len(kinds), 4)
                                    if kinds else None),
            "empty": sum(not r.ranks for r in rows),
            "median_s": round(statistics.median(secs), 4), "max_s": round(max(secs), 4),
            "median_cpu_s": round(statistics.median(r.cpu_seconds for r in rows), 4)}


def _speed_ratios(results: list[dict], reference: str = "rcaeval-baro") -> list[dict]:
    """Vigil's median time per case over the reference peer's, per dataset (both include fetching the
    observation)."""
    out = []
    for r in results:
        if r["method"] != "vigil":
            continue
        ref = next((x for x in results if x["dataset"] == r["dataset"] and x["method"] == reference), None)
        if ref and ref["median_s"] > 0:
            out.append({"dataset": r["dataset"], "vigil_median_s": r["median_s"],
                        f"{reference}_median_s": ref["median_s"],
                        "ratio": round(r["median_s"] / ref["median_s"], 2)})
    return out


def reliability(rows: Sequence[CaseResult], confidences: Sequence[float] | None = None) -> list[dict]:
    """How often the top-1 was right, by its stated confidence (bins of 0.2, and at or above 0.5, 0.7,
    0.9), with each bin's mean confidence beside the share right."""
    conf = [r.confidence or 0.0 for r in rows] if confidences is None else list(confidences)
    out = []

    def row(label: str, sel: list[int]) -> dict:
        return {"confidence": label, "cases": len(sel),
                "mean_confidence": round(statistics.fmean(conf[i] for i in sel), 4) if sel else None,
                "top1_right": round(sum(rows[i].hit(1) for i in sel) / len(sel), 4) if sel else None}

    for lo, hi in zip(CONFIDENCE_BINS, CONFIDENCE_BINS[1:], strict=False):
        out.append(row(f"[{lo:.1f}, {min(hi, 1.0):.1f}{')' if hi < 1 else ']'}",
                       [i for i in range(len(rows)) if lo <= conf[i] < hi]))
    for x in (0.5, 0.7, 0.9):
        out.append(row(f">= {x}", [i for i in range(len(rows)) if conf[i] >= x]))
    return out


def held_out_confidences(rows: Sequence[CaseResult]) -> list[float]:
    """Each case's top-1 confidence from a calibration fitted on every *other* recording (dataset): what
    the confidence means on a recording the calibration has not seen. With one recording only, its own
    fit (said in the report's warnings)."""
    datasets = sorted({r.dataset for r in rows})
    out = [0.0] * len(rows)
    for ds in datasets:
        train = [r for r in rows if r.dataset != ds and r.features] or [r for r in rows if r.features]
        if not train:
            continue
        cal = fit_calibration([tuple(r.features) for r in train], [r.hit(1) for r in train],
                              [r.dataset for r in train])
        for i, r in enumerate(rows):
            if r.dataset == ds and r.features and r.ranks:
                out[i] = cal.probability(tuple(r.features))
    return out


def fit_on(rows: Sequence[CaseResult]) -> Calibration:
    """The calibration fitted on every recording (what ``Settings.ranking.calibration`` should hold)."""
    train = [r for r in rows if r.features]
    return fit_calibration([tuple(r.features) for r in train], [r.hit(1) for r in train], [r.dataset for r in train])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_recording(rec: Recording, settings: Settings, alert_offset_s: float = 0.0,
                  peers: Sequence[Peer] = (), ablations: Sequence[str] = (), reference_gap_s: float = 0.0,
                  horizon_s: float = 0.0) -> tuple[list[CaseResult], list[str]]:
    """``alert_offset_s`` moves every alert by that many seconds (late alerts are positive): how
    well the engine copes when the alert time is off the fault's onset. ``peers`` (``bench.peers``)
    rank each case's observation too, timed like Vigil: fetching the observation included."""
    methods = (*METHODS, *(f"vigil/{a}" for a in ablations), *(p.method for p in peers))
    store = TelemetryStore(":memory:")
    try:
        with store.transaction() as w:
            warnings = rec.load(w, "bench")
        out = []
        for case in rec.cases:
            if case.label is None:
                continue
            alert = case.alert.model_copy(update={"at": case.alert.at + timedelta(seconds=alert_offset_s)})
            onset = alert.at.timestamp()
            t0, c0 = time.perf_counter(), time.process_time()
            truth_kind = case.label.fault_kind.value if case.label.fault_kind else None
            try:
                obs = observe(store, "bench", onset, alert, settings)
                if reference_gap_s or horizon_s:
                    obs = reshape(obs, reference_gap_s, horizon_s, settings.metric_lookback_s, settings.onset_guard_s)
            except InputError:          # nothing recorded around this alert: no answer, which counts as a miss
                for method in methods:
                    out.append(CaseResult(case=case.id, dataset=case.dataset, method=method,
                                          fault=case.label.fault or "-", truth=case.label.resource, ranks=[],
                                          seconds=time.perf_counter() - t0, true_fault_kind=truth_kind,
                                          **({"confidence": 0.0, "inconclusive": True}
                                             if method.startswith("vigil") else {})))
                continue
            t_obs, c_obs = time.perf_counter() - t0, time.process_time() - c0
            analysis = analyze(obs, settings)
            t_vigil, c_vigil = time.perf_counter() - t0, time.process_time() - c0
            hyps = analysis.hypotheses
            by_res = {h.resource: h for h in hyps}
            out.append(CaseResult(
                case=case.id, dataset=case.dataset, method="vigil", fault=case.label.fault or "-",
                truth=case.label.resource, ranks=[h.resource for h in hyps], seconds=t_vigil, cpu_seconds=c_vigil,
                fault_kind=hyps[0].fault_kind.value if hyps else None, true_fault_kind=truth_kind,
                kind_of_truth=by_res[case.label.resource].fault_kind.value if case.label.resource in by_res else None,
                confidence=hyps[0].confidence if hyps else 0.0, inconclusive=analysis.inconclusive,
                scores=[h.score for h in hyps], features=list(top_features([h.score for h in hyps]))))
            for name in ablations:
                t1, c1 = time.perf_counter(), time.process_time()
                a = analyze(ablate(obs, name), settings)
                hs = a.hypotheses
                out.append(CaseResult(
                    case=case.id, dataset=case.dataset, method=f"vigil/{name}", fault=case.label.fault or "-",
                    truth=case.label.resource, ranks=[h.resource for h in hs],
                    seconds=time.perf_counter() - t1 + t_obs, cpu_seconds=time.process_time() - c1 + c_obs,
                    fault_kind=hs[0].fault_kind.value if hs else None, true_fault_kind=truth_kind,
                    kind_of_truth=next((h.fault_kind.value for h in hs if h.resource == case.label.resource), None),
                    confidence=hs[0].confidence if hs else 0.0, inconclusive=a.inconclusive,
                    scores=[h.score for h in hs]))
            for peer in peers:
                t1, c1 = time.perf_counter(), time.process_time()
                answer = peer.rank(obs)
                out.append(CaseResult(case=case.id, dataset=case.dataset, method=peer.method,
                                      fault=case.label.fault or "-", truth=case.label.resource, ranks=answer.services,
                                      seconds=time.perf_counter() - t1 + t_obs,
                                      cpu_seconds=time.process_time() - c1 + c_obs, true_fault_kind=truth_kind,
                                      error=answer.error))
        return out, warnings
    finally:
        store.close()


def summarise(rows: list[CaseResult], methods: Sequence[str], report: BenchReport) -> BenchReport:
    """Score ``rows`` into ``report``: per recording and method, per fault type, Vigil's speed over
    rcaeval BARO's, failed peers, calibration in sample and out of recording, and the cases."""
    for ds in sorted({r.dataset for r in rows}):
        for method in methods:
            sel = [r for r in rows if r.dataset == ds and r.method == method]
            if sel:
                report.results.append({"dataset": ds, "method": method, **_score(sel)})
            for fault in sorted({r.fault for r in sel}):
                fsel = [r for r in sel if r.fault == fault]
                report.by_fault.append({"dataset": ds, "method": method, "fault": fault, **_score(fsel)})
    report.speed = _speed_ratios(report.results)
    for method in methods:
        failed = [r for r in rows if r.method == method and r.error]
        if failed:
            report.warnings.append(f"{method} failed on {len(failed)} of "
                                   f"{sum(r.method == method for r in rows)} case(s), counted as misses "
                                   f"(first: {failed[0].case}: {failed[0].error})")
    vig = [r for r in rows if r.method == "vigil"]
    report.calibration = reliability(vig)
    if len({r.dataset for r in vig}) > 1:
        report.calibration_out_of_recording = reliability(vig, held_out_confidences(vig))
    report.cases = [asdict(r) | {"top5": r.ranks[:5], "hit@1": r.hit(1)} for r in rows]
    return report


def load_cases(path: Path) -> tuple[list[CaseResult], dict]:
    """The cases of a ``vigil bench --json`` file, and the file's other figures."""
    import json
    names = {f.name for f in dataclasses.fields(CaseResult)}
    try:
        data = json.loads(Path(path).read_text())
        rows = []
        for c in data["cases"]:
            c = dict(c)
            if "ranks" not in c:          # files written before the ranks were kept: the top five
                c["ranks"], c["scores"] = c.get("top5", []), c.get("scores", [])[: len(c.get("top5", []))]
            rows.append(CaseResult(**{k: v for k, v in c.items() if k in names}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: not a vigil bench --json file ({exc})") from None
    return rows, data


def merge(paths: Sequence[Path]) -> BenchReport:
    """One report from several ``--json`` files of runs over disjoint recordings (a bench split across
    processes): the cases are pooled and scored again; peak memory is the largest, times add up."""
    rows: list[CaseResult] = []
    report = BenchReport()
    for path in paths:
        got, data = load_cases(path)
        rows.extend(got)
        report.peak_rss_mb = max(report.peak_rss_mb, float(data.get("peak_rss_mb", 0.0)))
        report.total_s += float(data.get("total_s", 0.0))
        report.total_cpu_s += float(data.get("total_cpu_s", 0.0))
        report.warnings.extend(data.get("warnings", []))
    methods = list(dict.fromkeys(r.method for r in rows))
    order = [m for m in (*METHODS, *(f"vigil/{a}" for a in ABLATIONS)) if m in methods]
    return summarise(rows, order + [m for m in methods if m not in order], report)


def markdown(rep: BenchReport) -> str:
    """The report as plain Markdown tables: they never truncate and paste straight into a note."""
    out: list[str] = []

    def fmt(v) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    def md(title: str, cols: list[tuple[str, str]], rows: list[dict]) -> None:
        out.extend(["", title, "", "| " + " | ".join(h for h, _ in cols) + " |", "|" + "---|" * len(cols)])
        out.extend("| " + " | ".join(fmt(r.get(k)) for _, k in cols) + " |" for r in rows)

    main_cols = [("dataset", "dataset"), ("method", "method"), ("cases", "cases"), ("AC@1", "ac@1"),
                 ("AC@3", "ac@3"), ("AC@5", "ac@5"), ("Avg@5", "avg@5"), ("fault kind", "fault_kind_accuracy"),
                 ("empty", "empty"), ("median s", "median_s"), ("max s", "max_s"), ("median CPU s", "median_cpu_s")]
    md("Root-cause localisation, service level", main_cols, rep.results)
    if rep.speed:
        md("Time per case: Vigil's median over rcaeval-baro's (both include fetching the observation)",
           [("dataset", "dataset"), ("vigil median s", "vigil_median_s"),
            ("rcaeval-baro median s", "rcaeval-baro_median_s"), ("ratio", "ratio")], rep.speed)
    md("By fault type", main_cols[:2] + [("fault", "fault")] + main_cols[2:], rep.by_fault)
    cal_cols = [("top-1 confidence", "confidence"), ("cases", "cases"), ("mean confidence", "mean_confidence"),
                ("top-1 right", "top1_right")]
    md("Calibration (vigil): how often the top-1 was right, by its confidence", cal_cols, rep.calibration)
    if rep.calibration_out_of_recording:
        md("Calibration out of recording (vigil): each recording's confidences from a calibration fitted on "
           "the other recordings", cal_cols, rep.calibration_out_of_recording)
    out.append(f"\npeak memory {rep.peak_rss_mb:.0f} MB; total {rep.total_s:.1f} s ({rep.total_cpu_s:.1f} s of CPU)")
    return "\n".join(out)


def run_bench(paths: list[Path], settings: Settings | None = None,
              progress: Callable[[Recording, int, int], None] | None = None,
              alert_offset_s: float = 0.0, peers: Sequence[str] = (), ablations: Sequence[str] = (),
              reference_gap_s: float = 0.0, horizon_s: float = 0.0) -> BenchReport:
    """``peers``: names of published methods (``bench.peers.SPECS``) to run beside Vigil; ``ablations``:
    Vigil again without some signals (``ABLATIONS``); ``reference_gap_s`` / ``horizon_s``: see ``reshape``."""
    for a in ablations:
        if a not in ABLATIONS:
            raise InputError(f"unknown ablation {a!r}: choose from {', '.join(ABLATIONS)}")
    settings = settings or Settings()
    loaded = load_peers(list(peers), settings) if peers else []
    t_start, c_start = time.perf_counter(), time.process_time()
    recordings = [r for r in discover(paths) if any(c.label for c in r.cases)]
    report = BenchReport()
    rows: list[CaseResult] = []
    for i, rec in enumerate(recordings):
        if progress:
            progress(rec, i, len(recordings))
        got, warnings = run_recording(rec, settings, alert_offset_s, loaded, ablations, reference_gap_s, horizon_s)
        rows.extend(got)
        report.warnings.extend(warnings)
    if progress and recordings:
        progress(recordings[-1], len(recordings), len(recordings))
    summarise(rows, (*METHODS, *(f"vigil/{a}" for a in ablations), *(p.method for p in loaded)), report)
    report.peak_rss_mb = round(peak_rss_mb(), 1)
    report.total_s = time.perf_counter() - t_start
    report.total_cpu_s = time.process_time() - c_start
    return report
