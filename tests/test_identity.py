"""One rule for "is this the same process?" (``vramtop.identity``), scalar and vectorised alike."""

from __future__ import annotations

import numpy as np

from vramtop.identity import START_TIME_SLACK_S, same_process, same_process_mask
from vramtop.messages import ProcessIdentity as Id

T = 1_714_529_000.25  # a start time, seconds since the epoch

CASES = [
    (Id(10, T), Id(10, T), True),  # one reading, two copies
    (Id(10, T), Id(10, T + 0.01), True),  # another clock tick's rounding
    (Id(10, T), Id(10, T - 0.9), True),  # btime stepped by a second between two readers
    (Id(10, T), Id(10, T + START_TIME_SLACK_S + 0.5), False),  # started later: a reused PID
    (Id(10, T), Id(10, T - 3600.0), False),
    (Id(10, T), Id(11, T), False),  # another PID
    (Id(10, 0.0), Id(10, 0.0), True),  # the sampler's one "unknown" record of it
    (Id(10, 0.0), Id(10, T), False),  # unknown against known: cannot be proved, so not
    (Id(10, T), Id(10, 0.0), False),
    (Id(10, 0.0), Id(10, 0.5), False),  # near zero is still "unknown", not "close"
]


def test_same_process_rule() -> None:
    for a, b, expected in CASES:
        assert same_process(a, b) is expected, (a, b)
        assert same_process(b, a) is expected, (b, a)  # symmetric


def test_the_vectorised_rule_agrees_with_the_scalar_one() -> None:
    pid = np.array([a.pid for a, _, _ in CASES], dtype=np.int64)
    start = np.array([a.start_time for a, _, _ in CASES])
    other_pid = np.array([b.pid for _, b, _ in CASES], dtype=np.int64)
    other_start = np.array([b.start_time for _, b, _ in CASES])
    mask = same_process_mask(pid, start, other_pid, other_start)
    assert mask.tolist() == [expected for _, _, expected in CASES]
