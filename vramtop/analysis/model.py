"""Results of the analysis, as the analyzer sends them to the render process, ``--once --json``,
the CSV and ``replay --json``. Plain frozen dataclasses; None = not known (yet)."""

from __future__ import annotations

from dataclasses import dataclass, field

from vramtop.messages import ProcessIdentity
from vramtop.wire import compact

# Phases
STABLE, GROWING, SHRINKING, VOLATILE, UNKNOWN = (
    "stable",
    "growing",
    "shrinking",
    "volatile",
    "unknown",
)
# Verdicts
OK, TIGHT, OOM_RISK = "OK", "TIGHT", "OOM risk"


@compact
@dataclass(frozen=True, slots=True)
class Trend:
    phase: str  # one of the phases above
    rate_mib_s: float  # signed slope, MiB per second (0.0 when unknown)
    rate_stderr_mib_s: float = 0.0  # uncertainty of the slope
    # A stable phase after a step: the step (MiB, signed) over the phase window, so the phase
    # names it ("stable, stepped +1.5G") while the rate beside it is the recent one.
    step_mib: float = 0.0

    @property
    def contradicted(self) -> bool:
        """The phase and the rate beside it tell different stories: growing without a positive
        rate, shrinking without a negative one, or "stable" beside a rate that would move the
        figure by more than 256 MiB a minute (the evaluation counts such rows; none may show)."""
        if self.phase == "growing":
            return not self.rate_mib_s > 0
        if self.phase == "shrinking":
            return not self.rate_mib_s < 0
        if self.phase == "stable":
            return abs(self.rate_mib_s) * 60.0 > 256.0
        return False


@compact
@dataclass(frozen=True, slots=True)
class OomPrediction:
    eta_s: float  # best estimate, seconds from now to OOM
    eta_low_s: float  # range from the slope's uncertainty
    eta_high_s: float
    confidence: float  # 0..1
    driver: ProcessIdentity | None  # the process driving the growth
    rule: str  # which rule produced it, e.g. "variance: sustained linear growth 42 samples"


@compact
@dataclass(frozen=True, slots=True)
class Segment:
    """A PELT change-point segment of a process's memory history."""

    start_ts: float
    end_ts: float
    delta_mib: float
    label: str  # "warm-up", "plateau", "leak", "cache fill", "release", "spike"


@compact
@dataclass(frozen=True, slots=True)
class Incarnation:
    """An ended earlier run of the same job (same user, command line and GPU)."""

    pid: int
    start_time: float
    ended_at: float  # when vramtop last saw it (seconds since the epoch)
    peak_bytes: float  # the most it held on this GPU while vramtop watched (NaN = n/a)
    likely_oom: bool  # it vanished with its GPU (nearly) full, or while growing into the limit
    seen_s: float = 0.0  # how long vramtop watched it on this GPU


@compact
@dataclass(frozen=True, slots=True)
class Lineage:
    """A process's earlier incarnations, newest last; ``restarts`` counts all of them, while
    ``previous`` keeps the most recent few."""

    restarts: int = 0
    previous: tuple[Incarnation, ...] = ()


NO_LINEAGE = Lineage()


@compact
@dataclass(frozen=True, slots=True)
class ProcessAnalysis:
    identity: ProcessIdentity
    gpu_index: int
    trend: Trend
    verdict: str  # OK / TIGHT / OOM risk
    reason: str  # always one line, shown in the UI
    eta: OomPrediction | None = None
    # PELT segments, computed on demand for the selected process only (oldest first).
    segments: tuple[Segment, ...] = ()
    # Why there are no segments for the selected process, e.g. "pip install 'vramtop[pelt]'".
    segments_note: str = ""
    lineage: Lineage = NO_LINEAGE


@compact
@dataclass(frozen=True, slots=True)
class GpuAnalysis:
    gpu_index: int
    trend: Trend
    oom: OomPrediction | None = None  # only when it passes the configured thresholds
    temp_warning: bool = False


@compact
@dataclass(frozen=True, slots=True)
class AnalysisResult:
    timestamp: float
    gpus: tuple[GpuAnalysis, ...] = ()
    processes: tuple[ProcessAnalysis, ...] = field(default=())
