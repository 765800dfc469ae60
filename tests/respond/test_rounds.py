"""Background rounds: a failing round keeps the loop going; its traceback is logged once, repeats are one
line each, and recovery is said."""

from __future__ import annotations

import logging
import time

from vigil.respond.rounds import Rounds


class Flaky(Rounds):
    def __init__(self, outcomes):
        super().__init__(interval_s=0.01)
        self.outcomes = list(outcomes)

    def tick(self) -> int:
        got = self.outcomes.pop(0)
        if isinstance(got, Exception):
            raise got
        return got


def test_a_repeating_failure_logs_its_traceback_once_and_recovery_is_said(caplog):
    down = ConnectionError("could not connect to server: Connection refused")
    r = Flaky([down, ConnectionError(str(down)), ConnectionError(str(down)), 1, ValueError("other"), 1])
    with caplog.at_level(logging.WARNING, logger="vigil.respond"):
        for _ in range(6):
            r._round()
    recs = [(x.levelname, x.getMessage(), x.exc_info is not None) for x in caplog.records]
    assert [t for _, _, t in recs].count(True) == 2, recs            # the outage's first round, the new error
    assert recs[0][2] and "round failed" in recs[0][1]
    assert recs[1][:2] == ("WARNING", "vigil-rounds round failed again (2 in a row): ConnectionError: "
                                      "could not connect to server: Connection refused")
    assert recs[2][1].endswith("(3 in a row): ConnectionError: could not connect to server: Connection refused")
    assert recs[3][1] == "vigil-rounds rounds work again after 3 failed"
    assert recs[4][2] and recs[5][1] == "vigil-rounds rounds work again after 1 failed"
    assert len(recs) == 6


def test_the_loop_survives_failing_rounds():
    r = Flaky([RuntimeError("x")] * 3 + [1] * 1000)
    r.start()
    try:
        deadline = time.monotonic() + 5
        while len(r.outcomes) > 990 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        r.stop()
    assert len(r.outcomes) <= 990
