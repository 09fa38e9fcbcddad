"""Labelled memory traces: the ground truth vramtop's analysis is measured against.

Each :class:`Trace` is one GPU with a few processes, sampled about once a second with realistic
imperfections: Gaussian jitter quantised to NVML's 2 MiB pages, ±10% sampling-interval jitter and
missing samples (n/a, NaN). Ground truth comes from the noise-free curves:

* ``phase[k]``: the main process's phase at sample k, or None where it is ambiguous (the first
  seconds after a change, while any honest detector is still deciding; the grace is
  :data:`GRACE_S` and is the same for every class);
* ``oom_ts``: when the noise-free GPU usage reaches the total (the trace ends there), or None
  for a GPU that never runs out; ``oom_beyond`` marks an OOM that lies after the trace's end;
* ``growth_ts``: when the growth that leads to the OOM started;
* ``events``: every (growth start, OOM) of the trace — several for a job that is OOM-killed and
  restarted (each incarnation a new identity with the same user and command line, in
  ``owners``); ``alive[i, k]`` says whether process i exists at sample k (the rows the sampler
  would list), and ``main_row[k]`` which row the phase truth is about (the current incarnation).
  Processes of other users count in the GPU's used memory but are not listed (``hidden``).

Used by ``tests/test_analysis_eval.py`` and ``scripts/eval_analysis.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from vramtop.messages import ProcessIdentity

FloatArray = npt.NDArray[np.float64]
GiB = float(1 << 30)
MiB = float(1 << 20)
GRACE_S = 30.0  # ground truth is None this long after the main process changes behaviour
WARMUP_S = 15.0  # and before this much of the process's own history exists
BASELINE = 0.5 * GiB  # driver / context memory that no process row accounts for

STABLE, GROWING, SHRINKING, VOLATILE = "stable", "growing", "shrinking", "volatile"


@dataclass
class Trace:
    name: str
    cls: str
    ts: FloatArray
    total: float
    identities: list[ProcessIdentity]
    used: FloatArray  # [P, n] observed, bytes, NaN = n/a; row 0 is the main process
    gpu_used: FloatArray  # [n] observed
    phase: list[str | None]
    oom_ts: float | None = None
    oom_beyond: bool = False
    growth_ts: float | None = None
    preallocates: set[ProcessIdentity] = field(default_factory=set)
    events: list[tuple[float, float]] = field(default_factory=list)
    alive: npt.NDArray[np.bool_] | None = None
    main_row: npt.NDArray[np.int64] | None = None
    owners: dict[ProcessIdentity, tuple[str, str]] = field(default_factory=dict)

    @property
    def main(self) -> ProcessIdentity:
        return self.identities[0]


@dataclass
class _Spec:
    """Noise-free curves on a 1 s grid (index = seconds) plus truth segments."""

    name: str
    cls: str
    total: float
    length: int
    curves: list[FloatArray]  # bytes, NaN before a process starts / after it ends
    truth: list[tuple[float, str | None]]  # (from time, label) for the main process
    growth_ts: float | None = None
    prealloc_main: bool = False
    # Given for traces with several OOMs (restarts): (growth start, OOM) in grid seconds; the
    # trace then runs its whole length.
    events: list[tuple[float, float]] | None = None
    owners: list[tuple[str, str]] | None = None
    hidden: frozenset[int] = frozenset()  # curves of other users: in the GPU total, not listed
    main_rows: list[tuple[float, int]] = field(default_factory=lambda: [(0.0, 0)])


def _steady(n: int, level: float) -> FloatArray:
    return np.full(n, level)


def _truth_at(truth: list[tuple[float, str | None]], t: float) -> str | None:
    label: str | None = None
    for start, value in truth:
        if t >= start:
            label = value
    return label


def realise(spec: _Spec, seed: int, sigma_mib: float = 2.0, missing: float = 0.02) -> Trace:
    """Sample the noise-free curves with jitter, quantisation and gaps."""
    rng = np.random.default_rng(seed)
    grid = np.arange(spec.length, dtype=np.float64)
    curves = np.vstack(spec.curves)
    true_gpu = BASELINE + np.nansum(curves, axis=0)
    beyond = False
    if spec.events is not None:
        n = spec.length
        oom_ts: float | None = spec.events[-1][1] if spec.events else None
    else:
        full = np.flatnonzero(true_gpu >= spec.total)
        oom_index = int(full[0]) if full.size else None
        if oom_index is None and spec.growth_ts is not None:
            # The growth continues after the trace ends: extrapolate its true OOM time.
            slope = (true_gpu[-1] - true_gpu[-11]) / 10.0
            oom_ts = float(grid[-1] + (spec.total - true_gpu[-1]) / slope) if slope > 0 else None
            beyond = oom_ts is not None
        else:
            oom_ts = float(grid[oom_index]) if oom_index is not None else None
        n = oom_index if oom_index is not None else spec.length
    start = 1_700_000_000.0 + 1000.0 * seed
    ts = start + grid[:n] + rng.uniform(-0.1, 0.1, n)
    noise = rng.normal(0.0, sigma_mib * MiB, (curves.shape[0], n))
    observed = np.round((curves[:, :n] + noise) / (2 * MiB)) * (2 * MiB)
    alive = np.isfinite(curves[:, :n])
    observed = np.where(alive, np.maximum(observed, 0.0), np.nan)
    observed[rng.random(observed.shape) < missing] = np.nan
    gpu = BASELINE + np.nansum(curves[:, :n], axis=0) + rng.normal(0.0, sigma_mib * MiB, n)
    gpu = np.minimum(np.round(gpu / (2 * MiB)) * (2 * MiB), spec.total)
    gpu[rng.random(n) < missing / 2] = np.nan
    main_row = np.zeros(n, dtype=np.int64)
    for t_from, row in spec.main_rows:
        main_row[grid[:n] >= t_from] = row
    phase: list[str | None] = []
    for k, g in enumerate(grid[:n]):
        born = np.flatnonzero(np.isfinite(curves[main_row[k]]))
        birth = float(born[0]) if born.size else 0.0
        ok = bool(alive[main_row[k], k]) and g >= birth + WARMUP_S
        phase.append(_truth_at(spec.truth, float(g)) if ok else None)
    identities = [ProcessIdentity(1000 + i, start - 500.0 + i) for i in range(curves.shape[0])]
    owner_list = spec.owners or [("user", f"python job{i}.py") for i in range(len(identities))]
    listed = [i for i in range(len(identities)) if i not in spec.hidden]
    events = (
        [(start + g0, start + t) for g0, t in spec.events]
        if spec.events is not None
        else (
            [(start + spec.growth_ts, start + oom_ts)]
            if spec.growth_ts is not None and oom_ts is not None and not beyond
            # An OOM with no growth before it (a spike that does not fit): no lead is owed.
            else ([(start + oom_ts, start + oom_ts)] if oom_ts is not None and not beyond else [])
        )
    )
    return Trace(
        name=spec.name,
        cls=spec.cls,
        ts=ts,
        total=spec.total,
        identities=[identities[i] for i in listed],
        used=observed[listed],
        gpu_used=gpu,
        phase=phase,
        oom_ts=None if oom_ts is None else start + oom_ts,
        oom_beyond=beyond,
        growth_ts=None if spec.growth_ts is None else start + spec.growth_ts,
        preallocates={identities[0]} if spec.prealloc_main else set(),
        events=events,
        alive=alive[listed],
        main_row=np.asarray([listed.index(r) for r in main_row.tolist()], dtype=np.int64),
        owners={identities[i]: owner_list[i] for i in listed},
    )


# --- the classes -------------------------------------------------------------------------------


def leak(rate_mib_s: float, base_gib: float, total_gib: float, other_gib: float) -> _Spec:
    """Flat for 60 s, then a linear leak until the GPU is full (or 600 s of growth)."""
    onset = 60
    headroom = total_gib * GiB - BASELINE - base_gib * GiB - other_gib * GiB
    t_oom = onset + headroom / (rate_mib_s * MiB)
    length = int(min(t_oom + 2, onset + 600))
    g = np.arange(length, dtype=np.float64)
    main = base_gib * GiB + np.maximum(g - onset, 0.0) * rate_mib_s * MiB
    return _Spec(
        f"leak {rate_mib_s:g} MiB/s, {base_gib:g} GiB of {total_gib:g}",
        "leak",
        total_gib * GiB,
        length,
        [main, _steady(length, other_gib * GiB)],
        [(0, STABLE), (onset, None), (onset + GRACE_S, GROWING)],
        growth_ts=float(onset),
    )


def staircase(
    step_mib: float, period_s: int, base_gib: float, total_gib: float, steps: int | None
) -> _Spec:
    """Steps separated by flats (gradient accumulation, allocator cache growth)."""
    onset = 60
    length = 700 if steps is None else onset + steps * period_s + 200
    g = np.arange(length, dtype=np.float64)
    count = np.floor(np.maximum(g - onset, 0.0) / period_s) + (g >= onset)
    if steps is not None:
        count = np.minimum(count, steps)
    main = base_gib * GiB + count * step_mib * MiB
    truth: list[tuple[float, str | None]] = [(0, STABLE), (onset, None), (onset + GRACE_S, GROWING)]
    if steps is not None:
        end = onset + (steps - 1) * period_s
        truth += [(end, None), (end + GRACE_S, STABLE)]
    return _Spec(
        f"staircase {step_mib:g} MiB / {period_s} s" + ("" if steps is None else f" x{steps}"),
        "staircase",
        total_gib * GiB,
        length,
        [main],
        truth,
        growth_ts=float(onset) if steps is None else None,
    )


def _saw(g: FloatArray, period: float, amplitude: float) -> FloatArray:
    """Rises linearly over a period, drops at once (a training loop's activations)."""
    return amplitude * ((g % period) / period)


def sawtooth(
    amplitude_gib: float, period_s: float, peak_share: float, total_gib: float, drift: float
) -> _Spec:
    """Bounded sawtooth peaking at ``peak_share`` of the GPU, or riding a drift (MiB/s)."""
    length = 500
    g = np.arange(length, dtype=np.float64)
    base = peak_share * total_gib * GiB - BASELINE - amplitude_gib * GiB
    main = base + _saw(g, period_s, amplitude_gib * GiB) + g * drift * MiB
    kind = "within headroom" if drift == 0 else f"beyond headroom (+{drift:g} MiB/s)"
    return _Spec(
        f"sawtooth {amplitude_gib:g} GiB / {period_s:g} s {kind}",
        "sawtooth" if drift == 0 else "sawtooth beyond",
        total_gib * GiB,
        length,
        [main],
        [(0, VOLATILE)],
        growth_ts=0.0 if drift else None,
    )


def spikes(amplitude_gib: float, base_gib: float, total_gib: float, tenant_gib: float) -> _Spec:
    """A spike every 40 s (evaluation steps); a second tenant may arrive at 150 s."""
    length = 420
    period, width, first = 40, 4, 20
    g = np.arange(length, dtype=np.float64)
    on = (g >= first) & (((g - first) % period) < width)
    main = base_gib * GiB + np.where(on, amplitude_gib * GiB, 0.0)
    tenant = np.where(g >= 150, tenant_gib * GiB, np.nan)
    fits = BASELINE + base_gib * GiB + tenant_gib * GiB + amplitude_gib * GiB < total_gib * GiB
    return _Spec(
        f"spike {amplitude_gib:g} GiB " + ("that fits" if fits else "that does not fit"),
        "spike",
        total_gib * GiB,
        length,
        [main, tenant],
        [(0, None), (first + width, VOLATILE)],
    )


def preallocated(total_gib: float, share: float) -> _Spec:
    """An inference server: loads weights, profiles, grabs its KV pool up to ``share``."""
    length = 400
    g = np.arange(length, dtype=np.float64)
    weights = 14.0 * GiB
    main = np.where(g < 10, np.nan, np.minimum((g - 10) * 0.7 * GiB, weights))
    pool = share * total_gib * GiB - BASELINE
    main = np.where(g >= 40, pool, main)
    return _Spec(
        f"pre-allocated server at {share:.0%}",
        "pre-allocated",
        total_gib * GiB,
        length,
        [main],
        [(0, None), (40 + GRACE_S, STABLE)],
        prealloc_main=True,
    )


def shrink(start_gib: float, rate_mib_s: float, seconds: int, total_gib: float) -> _Spec:
    onset = 60
    length = onset + seconds + 150
    g = np.arange(length, dtype=np.float64)
    main = start_gib * GiB - np.clip(g - onset, 0, seconds) * rate_mib_s * MiB
    return _Spec(
        f"shrink {rate_mib_s:g} MiB/s from {start_gib:g} GiB",
        "shrink",
        total_gib * GiB,
        length,
        [main, _steady(length, 2 * GiB)],
        [
            (0, STABLE),
            (onset, None),
            (onset + GRACE_S, SHRINKING),
            (onset + seconds, None),
            (onset + seconds + GRACE_S, STABLE),
        ],
    )


def start_grow_plateau(rate_mib_s: float, seconds: int, total_gib: float) -> _Spec:
    """A job starts at 10 s, grows while it warms up, then holds a plateau."""
    start, length = 10, 400
    g = np.arange(length, dtype=np.float64)
    main = np.where(
        g < start, np.nan, 0.3 * GiB + np.clip(g - start, 0, seconds) * rate_mib_s * MiB
    )
    end = start + seconds
    return _Spec(
        f"starts, grows {rate_mib_s:g} MiB/s for {seconds} s, plateaus",
        "start-grow-plateau",
        total_gib * GiB,
        length,
        [main, _steady(length, 3 * GiB)],
        [(0, GROWING), (end, None), (end + GRACE_S, STABLE)],
    )


def jitter(level_gib: float, sigma_mib: float, total_gib: float) -> tuple[_Spec, float]:
    """A flat process with large ± jitter (the allocator moving blocks around)."""
    length = 300
    return (
        _Spec(
            f"flat {level_gib:g} GiB ± {sigma_mib:g} MiB",
            "jitter",
            total_gib * GiB,
            length,
            [_steady(length, level_gib * GiB)],
            [(0, STABLE)],
        ),
        sigma_mib,
    )


# --- classes from how failures look in practice -------------------------------------------------


def crash_loop(
    rate_mib_s: float,
    base_gib: float,
    total_gib: float,
    other_gib: float,
    restarts: int,
    gap_s: float = 8.0,
    onset_s: float = 20.0,
) -> _Spec:
    """A leaking job OOM-killed at the top of the card and restarted with the same command line
    (a new PID each time: torchrun elastic, a Kubernetes restartPolicy, a retry loop)."""
    headroom = total_gib * GiB - BASELINE - base_gib * GiB - other_gib * GiB
    life = onset_s + headroom / (rate_mib_s * MiB)  # from an incarnation's start to its OOM
    runs = restarts + 1
    length = math.ceil(runs * life + restarts * gap_s) + 1
    g = np.arange(length, dtype=np.float64)
    curves: list[FloatArray] = []
    events: list[tuple[float, float]] = []
    truth: list[tuple[float, str | None]] = []
    mains: list[tuple[float, int]] = []
    for k in range(runs):
        t0 = k * (life + gap_s)
        t_oom = t0 + life
        local = g - t0
        main = base_gib * GiB + np.maximum(local - onset_s, 0.0) * rate_mib_s * MiB
        # The incarnation exists from t0 until its OOM (it is gone at the first full sample).
        curves.append(np.where((local >= 0) & (g < t_oom), main, np.nan))
        events.append((t0 + onset_s, t_oom))
        truth += [(t0, STABLE), (t0 + onset_s, None), (t0 + onset_s + GRACE_S, GROWING)]
        mains.append((t0, k))
    curves.append(_steady(length, other_gib * GiB))
    owners = [("alice", "python train.py --config big.yaml")] * runs + [("bob", "python serve.py")]
    return _Spec(
        f"crash loop {rate_mib_s:g} MiB/s x{runs}, {base_gib:g} of {total_gib:g} GiB",
        "crash-loop", total_gib * GiB, length, curves, truth, growth_ts=onset_s,
        events=events, owners=owners, main_rows=mains,
    )  # fmt: skip


def ranks(count: int, rate_mib_s: float, base_gib: float, total_gib: float) -> _Spec:
    """``count`` ranks of one job leaking together on one card (each slow; together fast)."""
    onset = 30
    headroom = total_gib * GiB - BASELINE - count * base_gib * GiB
    t_oom = onset + headroom / (count * rate_mib_s * MiB)
    length = int(t_oom) + 2
    g = np.arange(length, dtype=np.float64)
    leak = base_gib * GiB + np.maximum(g - onset, 0.0) * rate_mib_s * MiB
    return _Spec(
        f"{count} ranks leaking {rate_mib_s:g} MiB/s each on {total_gib:g} GiB",
        "ranks", total_gib * GiB, length, [leak.copy() for _ in range(count)],
        [(0, STABLE), (onset, None), (onset + GRACE_S, GROWING)], growth_ts=float(onset),
        owners=[("alice", f"python train.py --local-rank {i}") for i in range(count)],
    )  # fmt: skip


def near_full_sawtooth(amplitude_gib: float, period_s: float, peak_share: float,
                       total_gib: float) -> _Spec:  # fmt: skip
    """A bounded sawtooth whose peaks come within 5% of the card: never an OOM."""
    spec = sawtooth(amplitude_gib, period_s, peak_share, total_gib, 0)
    spec.name = f"sawtooth {amplitude_gib:g} GiB / {period_s:g} s peaking at {peak_share:.0%}"
    spec.cls = "sawtooth near full"
    return spec


def slow_sawtooth(amplitude_gib: float, period_s: float, peak_share: float,
                  total_gib: float) -> _Spec:  # fmt: skip
    """A sawtooth whose first rise lasts 30-60 s (a long accumulation, then a release)."""
    length = 600
    g = np.arange(length, dtype=np.float64)
    base = peak_share * total_gib * GiB - BASELINE - amplitude_gib * GiB
    main = base + _saw(g, period_s, amplitude_gib * GiB)
    return _Spec(
        f"slow sawtooth {amplitude_gib:g} GiB / {period_s:g} s peaking at {peak_share:.0%}",
        "slow sawtooth", total_gib * GiB, length, [main],
        [(0, GROWING), (period_s, None), (period_s + GRACE_S, VOLATILE)],
    )  # fmt: skip


def pool_warmup(share: float, warmup_s: float, total_gib: float) -> _Spec:
    """An inference server warming its pool up to a fixed share of the card, then holding."""
    length = 300
    g = np.arange(length, dtype=np.float64)
    start = 10.0
    target = share * total_gib * GiB - BASELINE - 2 * GiB
    ramp = np.clip((g - start) / warmup_s, 0.0, 1.0)
    main = np.where(g < start, np.nan, 1 * GiB + ramp * (target - 1 * GiB))
    end = start + warmup_s
    return _Spec(
        f"pool warm-up to {share:.0%} over {warmup_s:g} s",
        "pool warm-up", total_gib * GiB, length, [main, _steady(length, 2 * GiB)],
        [(0, GROWING), (end, None), (end + GRACE_S, STABLE)], prealloc_main=True,
    )  # fmt: skip


def epoch_staircase(step_gib: float, period_s: int, base_gib: float, total_gib: float) -> _Spec:
    """A step at every epoch boundary (1-2 GiB every 30-120 s) until the card is full."""
    onset = 30
    headroom = total_gib * GiB - BASELINE - base_gib * GiB
    steps_to_full = math.ceil(headroom / (step_gib * GiB))
    t_oom = onset + (steps_to_full - 1) * period_s
    length = t_oom + 1
    g = np.arange(length, dtype=np.float64)
    count = np.floor(np.maximum(g - onset, 0.0) / period_s) + (g >= onset)
    main = base_gib * GiB + count * step_gib * GiB
    # Between two epoch boundaries the memory is flat for longer than any phase window: "stable"
    # there is as true as "growing", so the phase is not scored; the warning is.
    return _Spec(
        f"epoch staircase {step_gib:g} GiB / {period_s} s",
        "epoch staircase", total_gib * GiB, length, [main],
        [(0, STABLE), (onset, None)], growth_ts=float(onset),
    )  # fmt: skip


def noisy_neighbour(rate_mib_s: float, total_gib: float, swing_gib: float) -> _Spec:
    """A leak beside a process whose memory swings by GiBs every few seconds."""
    onset = 40
    length_cap = 900
    g = np.arange(length_cap, dtype=np.float64)
    neighbour = 6 * GiB + swing_gib * GiB * (0.5 + 0.5 * np.sin(2 * np.pi * g / 7.0)) * (
        (g % 23) < 15
    )
    leak = 4 * GiB + np.maximum(g - onset, 0.0) * rate_mib_s * MiB
    true_gpu = BASELINE + leak + neighbour
    full = np.flatnonzero(true_gpu >= total_gib * GiB)
    length = int(full[0]) + 1 if full.size else length_cap
    return _Spec(
        f"leak {rate_mib_s:g} MiB/s beside a {swing_gib:g} GiB swinger",
        "noisy neighbour", total_gib * GiB, length, [leak[:length], neighbour[:length]],
        [(0, STABLE), (onset, None), (onset + GRACE_S, GROWING)], growth_ts=float(onset),
    )  # fmt: skip


def exp_shrink(start_gib: float, floor_gib: float, tau_s: float, total_gib: float) -> _Spec:
    """Memory released with a time constant (a cache draining): shrinking, then stable."""
    onset, length = 60, 500
    g = np.arange(length, dtype=np.float64)
    drop = (start_gib - floor_gib) * GiB
    main = floor_gib * GiB + drop * np.exp(-np.maximum(g - onset, 0.0) / tau_s)
    # Shrinking while the rate is well above the noise floor; stable once the curve is within
    # a few MiB of its floor; the tail in between is ambiguous.
    fast = onset + tau_s * math.log(drop / MiB / (tau_s * 2.0))  # rate falls below 2 MiB/s
    flat = onset + tau_s * math.log(drop / (8 * MiB))  # within 8 MiB of the floor
    return _Spec(
        f"exponential shrink {start_gib:g}->{floor_gib:g} GiB, tau {tau_s:g} s",
        "exp shrink", total_gib * GiB, length, [main, _steady(length, 2 * GiB)],
        [(0, STABLE), (onset, None), (onset + 10, SHRINKING), (fast, None),
         (max(flat, fast) + GRACE_S, STABLE)],
    )  # fmt: skip


def other_users(rate_mib_s: float, total_gib: float, hidden_gib: float) -> _Spec:
    """A leak on a GPU where another user's process (not listed) holds ``hidden_gib``."""
    spec = leak(rate_mib_s, 4, total_gib, 0)
    g = np.arange(spec.length, dtype=np.float64)
    headroom = total_gib * GiB - BASELINE - 4 * GiB - hidden_gib * GiB
    length = int(60 + headroom / (rate_mib_s * MiB)) + 2
    main = 4 * GiB + np.maximum(g - 60, 0.0) * rate_mib_s * MiB
    hidden = _steady(spec.length, hidden_gib * GiB)
    return _Spec(
        f"leak {rate_mib_s:g} MiB/s, another user holds {hidden_gib:g} GiB",
        "other users", total_gib * GiB, min(length, spec.length), [main, hidden], spec.truth,
        growth_ts=60.0, hidden=frozenset({1}),
    )  # fmt: skip


def suite(full: bool = True, seed: int = 0) -> list[Trace]:
    """The evaluation traces; ``full=False`` keeps one or two per class (for the unit tests).
    ``seed`` shifts every trace's noise, jitter and gaps to another realisation (0: the one the
    README's table shows)."""
    makers: list[tuple[Callable[[], _Spec], float]] = [
        (lambda: leak(5, 2, 16, 10), 2.0),
        (lambda: leak(20, 8, 24, 4), 2.0),
        (lambda: leak(50, 20, 80, 35), 3.0),
        (lambda: leak(100, 4, 24, 6), 2.0),
        (lambda: leak(1024, 16, 80, 4), 4.0),
        (lambda: leak(10, 40, 80, 0), 4.0),
        (lambda: staircase(128, 8, 6, 24, None), 2.0),
        (lambda: staircase(512, 5, 20, 80, None), 3.0),
        (lambda: staircase(256, 10, 4, 24, 12), 2.0),
        (lambda: sawtooth(2, 10, 0.95, 24, 0), 2.0),
        (lambda: sawtooth(6, 15, 0.9, 80, 0), 3.0),
        (lambda: sawtooth(2, 12, 0.85, 24, 8), 2.0),
        (lambda: sawtooth(4, 8, 0.8, 80, 40), 3.0),
        (lambda: spikes(4, 6, 24, 4), 2.0),
        (lambda: spikes(6, 8, 24, 10), 2.0),
        (lambda: preallocated(80, 0.92), 2.0),
        (lambda: shrink(30, 50, 200, 80), 3.0),
        (lambda: shrink(6, 10, 240, 24), 2.0),
        (lambda: start_grow_plateau(400, 40, 80), 2.0),
        (lambda: start_grow_plateau(100, 30, 24), 2.0),
        (lambda: crash_loop(300, 8, 48, 4, 2), 3.0),
        (lambda: crash_loop(1024, 4, 24, 2, 1), 4.0),
        (lambda: crash_loop(25, 6, 24, 2, 1, gap_s=15), 2.0),
        (lambda: crash_loop(512, 20, 80, 8, 3, gap_s=4), 3.0),
        (lambda: ranks(2, 12, 6, 24), 2.0),
        (lambda: ranks(4, 511, 4, 40), 3.0),
        (lambda: ranks(8, 3, 8, 80), 2.0),
        (lambda: near_full_sawtooth(2, 10, 0.97, 24), 2.0),
        (lambda: near_full_sawtooth(8, 18, 0.99, 80), 3.0),
        (lambda: slow_sawtooth(6, 45, 0.88, 80), 3.0),
        (lambda: slow_sawtooth(3, 60, 0.85, 24), 2.0),
        (lambda: pool_warmup(0.9, 20, 80), 3.0),
        (lambda: pool_warmup(0.92, 45, 48), 2.0),
        (lambda: epoch_staircase(1, 45, 6, 24), 2.0),
        (lambda: epoch_staircase(2, 90, 20, 48), 2.0),
        (lambda: noisy_neighbour(30, 24, 3), 2.0),
        (lambda: exp_shrink(20, 4, 40, 80), 3.0),
        (lambda: exp_shrink(8, 1, 25, 24), 2.0),
        (lambda: other_users(20, 24, 8), 2.0),
    ]
    shift = 1000 * seed
    traces = [realise(make(), shift + k, sigma) for k, (make, sigma) in enumerate(makers)]
    flat, sigma = jitter(10, 12, 24)
    traces.append(realise(flat, shift + 99, sigma))
    if full:
        return traces
    keep: dict[str, int] = {}
    out = []
    for trace in traces:
        if keep.get(trace.cls, 0) < 1 or trace.name.startswith("spike"):
            out.append(trace)
            keep[trace.cls] = keep.get(trace.cls, 0) + 1
    return out
