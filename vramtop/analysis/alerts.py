"""Alert hysteresis: an OOM warning, once raised, holds until the condition has clearly passed.

Where it sits: the analyzer core asks :class:`AlertLatch` once per tick for every GPU and every
process with a prediction (or a standing warning) whether to warn, after ``oom.alert_passes``
said whether this tick's prediction alone would. Without it a staircase leak warns on its steps
and goes quiet on its flats, and a prediction hovering at the confidence bar flickers.

Raising needs a prediction that passes ``[alerts]``. A raised warning holds while any of:

* this tick's prediction still passes, or is still near it: confidence at least
  ``RELEASE_CONFIDENCE`` × ``oom_min_confidence`` and its soonest end within ``RELEASE_HORIZON`` ×
  ``oom_warning_seconds``;
* there is no prediction at all (a staircase between steps, a growth paused for a moment), for
  at most ``HOLD_S`` seconds since it last passed, while the memory has not fallen back.

It ends when the memory falls back (by more than the change threshold), when a confident
prediction puts the OOM clearly beyond the warning time, after ``HOLD_S`` without support, or
when its key leaves. While held without a prediction, the last passing one is shown with its
ETA counted down from when it passed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from dataclasses import dataclass

from vramtop.analysis.model import OomPrediction
from vramtop.config import AlertsConfig

RELEASE_CONFIDENCE = 0.5
RELEASE_HORIZON = 2.0
HOLD_S = 90.0  # longer than the flats of a staircase leak (epoch boundaries, cache growth)


@dataclass(slots=True)
class _Held:
    prediction: OomPrediction
    passed_at: float
    level: float  # memory (bytes) when it last passed
    seen: int


class AlertLatch:
    """Per-key alert state (a GPU index, a (process identity, GPU) pair)."""

    def __init__(self, forget_after: int = 5) -> None:
        self._held: dict[Hashable, _Held] = {}
        self._tick = 0
        self.forget_after = forget_after

    def begin_tick(self) -> None:
        self._tick += 1
        if self._tick % 16 == 0:
            stale = [k for k, h in self._held.items() if self._tick - h.seen > self.forget_after]
            for k in stale:
                del self._held[k]

    def holding(self, key: Hashable) -> bool:
        return key in self._held

    def held(self) -> list[Hashable]:
        return list(self._held)

    def update(
        self,
        key: Hashable,
        now: float,
        prediction: OomPrediction | None,
        passes: bool,
        level: float,
        threshold_bytes: float,
        alerts: AlertsConfig,
    ) -> OomPrediction | None:
        """The prediction to warn with this tick, or None for no warning."""
        held = self._held.get(key)
        if passes and prediction is not None:
            self._held[key] = _Held(prediction, now, level, self._tick)
            return prediction
        if held is None:
            return None
        fell = (
            math.isfinite(level)
            and math.isfinite(held.level)
            and level < held.level - max(threshold_bytes, 0.0)
        )
        near = (
            prediction is not None
            and prediction.confidence >= RELEASE_CONFIDENCE * alerts.oom_min_confidence
            and prediction.eta_low_s <= RELEASE_HORIZON * alerts.oom_warning_seconds
        )
        clearly_beyond = (
            prediction is not None
            and prediction.confidence >= alerts.oom_min_confidence
            and prediction.eta_low_s > RELEASE_HORIZON * alerts.oom_warning_seconds
        )
        if fell or clearly_beyond:
            del self._held[key]
            return None
        if near and prediction is not None:
            held.seen = self._tick
            return prediction
        if prediction is None and now - held.passed_at <= HOLD_S:
            held.seen = self._tick
            elapsed = max(now - held.passed_at, 0.0)
            p = held.prediction
            return dataclasses.replace(
                p,
                eta_s=max(p.eta_s - elapsed, 0.0),
                eta_low_s=max(p.eta_low_s - elapsed, 0.0),
                eta_high_s=max(p.eta_high_s - elapsed, 0.0),
            )
        del self._held[key]
        return None
