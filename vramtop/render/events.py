"""What happened on each GPU, for the marks on its timeline: processes that started or exited,
restarts of the same job, phase changes and the moment an OOM became likely.

Where it sits: ``controller.py`` feeds every ``SampleMessage`` (process arrivals and departures)
and every ``AnalysisMessage`` (the GPU's phase, its OOM prediction) to :class:`EventLog`;
``charts.py`` hands ``for_gpu(i)`` to the timeline. A process that exits and a new one with the
same user, command line and GPU within ``RESTART_WINDOW_S`` is marked as a restart (the same
job's next incarnation), not as an exit and a stranger's start. Bounded: the newest
``MAX_EVENTS`` per GPU are kept.
"""

from __future__ import annotations

import math
from collections import deque

from vramtop.analysis.model import UNKNOWN, AnalysisResult
from vramtop.messages import ProcessIdentity, SampleMessage
from vramtop.render.timeline import ChartEvent

MAX_EVENTS = 64
RESTART_WINDOW_S = 120.0
OOM_QUIET_S = 60.0

JobKey = tuple[str, str, int]  # (user, command, GPU)


class EventLog:
    def __init__(self) -> None:
        self._events: dict[int, deque[ChartEvent]] = {}
        self._present: dict[tuple[ProcessIdentity, int], JobKey] | None = None
        self._exited: dict[JobKey, float] = {}
        self._phase: dict[int, str] = {}
        self._oom: dict[int, bool] = {}
        self._oom_at: dict[int, float] = {}

    def _add(self, gpu: int, event: ChartEvent) -> None:
        self._events.setdefault(gpu, deque(maxlen=MAX_EVENTS)).append(event)

    def for_gpu(self, gpu: int) -> tuple[ChartEvent, ...]:
        return tuple(self._events.get(gpu, ()))

    def observe_sample(self, sample: SampleMessage) -> None:
        ts = sample.snapshot.timestamp
        now = {(r.identity, r.gpu_index): (r.user, r.command, r.gpu_index) for r in sample.rows}
        before = self._present
        self._present = now
        if before is None:
            return  # the first sample: everything was already there
        for key, job in before.items():
            if key not in now:
                self._exited[job] = ts
                self._add(key[1], ChartEvent(ts, "exit", f"-{key[0].pid}"))
        for key, job in now.items():
            if key in before:
                continue
            gone = self._exited.pop(job, None)
            again = gone is not None and ts - gone <= RESTART_WINDOW_S and bool(job[1])
            kind = "restart" if again else "start"
            self._add(key[1], ChartEvent(ts, kind, f"+{key[0].pid}"))
        for job in [j for j, t in self._exited.items() if ts - t > RESTART_WINDOW_S]:
            del self._exited[job]

    def observe_analysis(self, result: AnalysisResult) -> None:
        ts = result.timestamp
        for g in result.gpus:
            phase = g.trend.phase
            old = self._phase.get(g.gpu_index)
            self._phase[g.gpu_index] = phase
            if old is not None and old != phase and UNKNOWN not in (old, phase):
                self._add(g.gpu_index, ChartEvent(ts, "phase", phase))
            likely = g.oom is not None
            # A prediction that flickers around the alert threshold is one event, not many.
            recent = ts - self._oom_at.get(g.gpu_index, -math.inf) < OOM_QUIET_S
            if likely and not self._oom.get(g.gpu_index, False) and not recent:
                self._add(g.gpu_index, ChartEvent(ts, "oom", "OOM likely"))
            if likely:
                self._oom_at[g.gpu_index] = ts
            self._oom[g.gpu_index] = likely
