"""Manual starting points, the pure part (``engine/starting.py``): where a CPU series rose, when the error
count stepped up; nothing when nothing rose. (The reads around it are tested through the API in
test_api_flow.)"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vigil.engine.starting import change_point, cpu_rise, error_spike, error_times


def _series(resource: str, name: str, rise_at: int | None, n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(len(resource) + len(name))
    v = 20 + rng.normal(0, 1, n)
    if rise_at is not None:
        v[rise_at:] += 30
    return pd.DataFrame({"resource": resource, "name": name, "ts": 1_000.0 + 10.0 * np.arange(n), "value": v})


def test_the_cpu_series_that_rose_and_when():
    m = pd.concat([_series("cart", "container_cpu_usage_seconds", 80), _series("db", "container_cpu_usage_seconds", None),
                   _series("api", "http_requests_total", 40)])          # a rise, but not a CPU series
    rise = cpu_rise(m)
    assert rise is not None and (rise.resource, rise.metric) == ("cart", "container_cpu_usage_seconds")
    assert rise.at == 1_000.0 + 10.0 * 80 and rise.z > 10
    assert cpu_rise(_series("db", "container_cpu_usage_seconds", None)) is None


def test_the_error_count_steps_up():
    spans = pd.DataFrame({"start": np.r_[np.linspace(0, 600, 30), np.linspace(600, 1200, 600)],
                          "error": np.r_[np.zeros(30), np.ones(600)].astype(bool)})
    logs = pd.DataFrame({"ts": [5.0, 900.0], "level": ["info", "ERROR"]})
    errs = error_times(spans, logs)
    assert len(errs) == 601
    rise = error_spike(errs, 0.0, 1200.0)
    assert rise is not None and abs(rise.at - 600.0) <= 10.0 and rise.count == 601
    steady = np.linspace(0, 1200, 400)
    assert error_spike(steady, 0.0, 1200.0) is None and error_spike(np.array([]), 0.0, 1.0) is None


def test_a_change_point_needs_enough_points_and_a_clear_rise():
    assert change_point(np.arange(5.0), np.r_[0, 0, 0, 9, 9.0]) is None
    assert change_point(np.arange(40.0), np.ones(40)) is None
    t, z = change_point(np.arange(40.0), np.r_[np.zeros(25), np.full(15, 5.0)], min_scale=1.0)
    assert t == 25.0 and z >= 5
