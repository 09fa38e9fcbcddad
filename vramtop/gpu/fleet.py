"""The fleet backend: many machines' ``vramtop exporter`` series read back as one snapshot.

Data flow: a source — a Prometheus server's HTTP API (``vramtop --prometheus URL``: one instant
query for every ``vramtop_*`` series) or the exporters themselves (``vramtop --remote
URL,...``: their ``/metrics`` parsed with prometheus_client's parser) — gives a list of series;
:func:`build` groups them by ``hostname`` label and turns them into a :class:`Snapshot` whose
GPUs are numbered across the fleet (grouped by host, the host in each card's name), the process
rows (identity from ``vramtop_process_info``'s ``start_time``, the host before the command),
and the :class:`AnalysisResult` the nodes computed themselves — phases, rates, verdicts, ETAs,
restarts are shown as each node judged them, never recomputed from a coarser view. The sampler
finds ``rows_for`` and ``analysis_for`` on this backend (as on the replay backend) and sends
that analysis in place of an analyzer's.

Read-only by construction: the processes are other machines'; the monitor runs with kill off.
Every HTTP read has a timeout and a size cap; a source that cannot be read is a note on the
snapshot, never a crash.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vramtop.analysis.model import (
    UNKNOWN,
    AnalysisResult,
    GpuAnalysis,
    OomPrediction,
    ProcessAnalysis,
    Trend,
)
from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.na import NA
from vramtop.sanitize import clean

MIB = 1 << 20
TIMEOUT_S = 5.0
MAX_BYTES = 32 << 20  # a fleet's exposition: generous, but bounded
QUERY = '{__name__=~"vramtop_.+"}'


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    labels: Mapping[str, str]
    value: float


class FleetError(Exception):
    """A source that could not be read (one line)."""


def _get(url: str, params: Mapping[str, str] | None = None) -> bytes:
    import requests

    try:
        response = requests.get(
            url, params=params, timeout=TIMEOUT_S, stream=True, allow_redirects=False
        )
        response.raise_for_status()
        body = response.raw.read(MAX_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise FleetError(f"{url}: {type(exc).__name__}: {exc}".splitlines()[0][:300]) from None
    if len(body) > MAX_BYTES:
        raise FleetError(f"{url}: more than {MAX_BYTES >> 20} MiB")
    return bytes(body)


def prometheus_series(base_url: str) -> list[Series]:
    """Every vramtop series a Prometheus server holds now (an instant query)."""
    import json

    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        doc = json.loads(_get(url, {"query": QUERY}))
    except ValueError:
        raise FleetError(f"{url}: not a Prometheus API answer") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise FleetError(f"{url}: {str(doc.get('error', 'query failed'))[:200]}")
    out = []
    for item in (doc.get("data") or {}).get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])
        except (KeyError, TypeError, ValueError, IndexError):
            continue
        out.append(Series(labels.pop("__name__", ""), labels, value))
    return out


def exporter_series(urls: Sequence[str]) -> tuple[list[Series], list[str]]:
    """Every series of each exporter's /metrics; (series, notes for the ones that failed)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: list[Series] = []
    notes = []
    for url in urls:
        target = url if "/metrics" in url else url.rstrip("/") + "/metrics"
        try:
            text = _get(target).decode("utf-8", "replace")
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    out.append(Series(s.name, dict(s.labels), float(s.value)))
        except (FleetError, ValueError) as exc:
            notes.append(f"fleet: cannot read {clean(target)}: {clean(str(exc))}")
    return out, notes


@dataclass
class _Gpu:
    host: str
    index: int
    labels: dict[str, str]
    values: dict[str, float]
    phase: str = UNKNOWN


@dataclass
class _Proc:
    host: str
    gpu: int
    pid: int
    labels: dict[str, str]
    values: dict[str, float]
    start_time: float = 0.0
    same_user: bool = False
    phase: str = UNKNOWN
    verdict: str = ""


@dataclass(frozen=True)
class FleetView:
    snapshot: Snapshot
    rows: tuple[ProcessRow, ...]
    analysis: AnalysisResult


def _int(value: float | None) -> int | object:
    return NA if value is None or not math.isfinite(value) else int(value)


def _float(value: float | None) -> float | object:
    return NA if value is None or not math.isfinite(value) else float(value)


def build(
    series: Iterable[Series], notes: Sequence[str] = (), now: float | None = None
) -> FleetView:
    """The fleet as one sample: GPUs grouped by host (hosts in name order), processes, and the
    nodes' own analysis."""
    gpus: dict[tuple[str, int], _Gpu] = {}
    procs: dict[tuple[str, int, int], _Proc] = {}
    for s in series:
        host = s.labels.get("hostname", "")
        try:
            gpu = int(s.labels.get("gpu", ""))
        except ValueError:
            continue
        if s.name.startswith("vramtop_gpu_"):
            g = gpus.setdefault((host, gpu), _Gpu(host, gpu, {}, {}))
            g.labels.update(s.labels)
            if s.name == "vramtop_gpu_phase" and s.value:
                g.phase = s.labels.get("phase", UNKNOWN)
            else:
                g.values[s.name] = s.value
        elif s.name.startswith("vramtop_process_"):
            try:
                pid = int(s.labels.get("pid", ""))
            except ValueError:
                continue
            p = procs.setdefault((host, gpu, pid), _Proc(host, gpu, pid, {}, {}))
            p.labels.update(s.labels)
            if s.name == "vramtop_process_info":
                try:
                    p.start_time = float(s.labels.get("start_time", "0") or 0.0)
                except ValueError:
                    p.start_time = 0.0
                p.same_user = s.labels.get("same_user") == "True"
            elif s.name == "vramtop_process_phase" and s.value:
                p.phase = s.labels.get("phase", UNKNOWN)
            elif s.name == "vramtop_process_verdict" and s.value:
                p.verdict = s.labels.get("verdict", "")
            else:
                p.values[s.name] = s.value
    order = sorted(gpus, key=lambda k: (k[0], k[1]))
    index = {key: i for i, key in enumerate(order)}
    gpu_samples = []
    gpu_results = []
    for key in order:
        g = gpus[key]
        v = g.values.get
        model = clean(g.labels.get("model", ""), 64)
        state = GpuState.LOST if g.labels.get("state") == "lost" else GpuState.OK
        gpu_samples.append(
            GpuSample(
                index=index[key],
                uuid=clean(g.labels.get("uuid", ""), 96),
                name=f"{clean(g.host, 64)}: {model}" if g.host else model,
                state=state,
                memory_total=_int(v("vramtop_gpu_memory_total_bytes")),  # type: ignore[arg-type]
                memory_used=_int(v("vramtop_gpu_memory_used_bytes")),  # type: ignore[arg-type]
                memory_reserved=_int(v("vramtop_gpu_memory_reserved_bytes")),  # type: ignore[arg-type]
                memory_free=_int(v("vramtop_gpu_memory_free_bytes")),  # type: ignore[arg-type]
                util_gpu=_int(_scaled(v("vramtop_gpu_utilization_ratio"))),  # type: ignore[arg-type]
                util_memory=_int(_scaled(v("vramtop_gpu_memory_bandwidth_ratio"))),  # type: ignore[arg-type]
                temperature_c=_int(v("vramtop_gpu_temperature_celsius")),  # type: ignore[arg-type]
                power_w=_float(v("vramtop_gpu_power_watts")),  # type: ignore[arg-type]
                power_limit_w=_float(v("vramtop_gpu_power_limit_watts")),  # type: ignore[arg-type]
            )
        )
        gpu_results.append(
            GpuAnalysis(
                index[key],
                _trend(g.phase, v("vramtop_gpu_memory_growth_bytes_per_second")),
                _oom(g.values, "gpu", None),
            )
        )
    proc_samples = []
    rows = []
    proc_results = []
    for (host, gpu, pid), p in sorted(procs.items()):
        gi = index.get((host, gpu))
        if gi is None:
            continue
        ident = ProcessIdentity(pid, p.start_time)
        used = p.values.get("vramtop_process_memory_bytes")
        util = _scaled(p.values.get("vramtop_process_utilization_ratio"))
        proc_samples.append(
            ProcessSample(pid, gi, used_bytes=_int(used), sm_util=_int(util))  # type: ignore[arg-type]
        )
        command = clean(p.labels.get("command", ""))
        rows.append(
            ProcessRow(
                identity=ident,
                gpu_index=gi,
                slot=-1,
                user=clean(p.labels.get("user", ""), 64),
                command=f"{clean(host, 64)}: {command}" if host else command,
                same_user=p.same_user,
            )
        )
        trend = _trend(p.phase, p.values.get("vramtop_process_memory_growth_bytes_per_second"))
        restarts = p.values.get("vramtop_process_restarts")
        reason = f"as judged on {clean(host, 64) or 'its host'}"
        if restarts:
            reason += f"; restarted {int(restarts)}x"
        proc_results.append(
            ProcessAnalysis(
                ident, gi, trend, p.verdict or "OK", reason, _oom(p.values, "process", ident)
            )
        )
    stamp = now if now is not None else time.time()
    hosts = sorted({g.host for g in gpus.values()})
    snapshot = Snapshot(
        timestamp=stamp,
        backend="fleet",
        gpus=tuple(gpu_samples),
        processes=tuple(proc_samples),
        driver_version=f"{len(hosts)} hosts",
        notes=tuple(notes),
    )
    return FleetView(
        snapshot,
        tuple(rows),
        AnalysisResult(stamp, tuple(gpu_results), tuple(proc_results)),
    )


def _scaled(ratio: float | None) -> float | None:
    return None if ratio is None else ratio * 100.0


def _trend(phase: str, rate_bytes: float | None) -> Trend:
    rate = 0.0 if rate_bytes is None or not math.isfinite(rate_bytes) else rate_bytes / MIB
    return Trend(phase or UNKNOWN, rate)


def _oom(
    values: Mapping[str, float], kind: str, driver: ProcessIdentity | None
) -> OomPrediction | None:
    eta = values.get(f"vramtop_{kind}_oom_eta_seconds")
    if eta is None:
        return None
    return OomPrediction(
        eta_s=eta,
        eta_low_s=values.get(f"vramtop_{kind}_oom_eta_low_seconds", eta),
        eta_high_s=values.get(f"vramtop_{kind}_oom_eta_high_seconds", eta),
        confidence=values.get(f"vramtop_{kind}_oom_confidence_ratio", 0.0),
        driver=driver,
        rule="as predicted on the node",
    )


class FleetBackend:
    """``--prometheus URL`` (``prometheus``) or ``--remote URL,...`` (``urls``) behind the
    backend protocol, with ``rows_for`` and ``analysis_for`` for the sampler."""

    name = "fleet"

    def __init__(
        self, prometheus: str | None = None, urls: Sequence[str] = (), max_gpus: int = 0
    ) -> None:
        self.prometheus = prometheus
        self.urls = tuple(urls)
        self.max_gpus = max_gpus  # 0: no cap (the shared-memory history is sized once)
        self._last: FleetView | None = None

    def _read(self) -> FleetView:
        if self.prometheus is not None:
            return build(prometheus_series(self.prometheus))
        series, notes = exporter_series(self.urls)
        if notes and not series:
            raise FleetError("; ".join(notes))
        return build(series, notes)

    def open(self) -> None:
        try:
            self._last = self._read()
        except FleetError as exc:
            raise BackendUnavailable(f"fleet view: {exc}") from None
        if not self._last.snapshot.gpus:
            where = self.prometheus or ", ".join(self.urls)
            raise BackendUnavailable(f"fleet view: no vramtop exporter series at {where}")

    def close(self) -> None:
        pass

    def sample(self) -> Snapshot:
        try:
            view = self._read()
        except FleetError as exc:
            previous = self._last.snapshot if self._last is not None else None
            gpus = previous.gpus if previous is not None else ()
            view = FleetView(
                Snapshot(time.time(), "fleet", gpus, (), notes=(f"fleet: {exc}",)),
                (),
                AnalysisResult(time.time()),
            )
        if self.max_gpus and len(view.snapshot.gpus) > self.max_gpus:
            view = _capped(view, self.max_gpus)
        self._last = view
        return view.snapshot

    def rows_for(self, snapshot: Snapshot) -> tuple[ProcessRow, ...] | None:
        if self._last is not None and self._last.snapshot is snapshot:
            return self._last.rows
        return None

    def analysis_for(self, snapshot: Snapshot) -> AnalysisResult | None:
        if self._last is not None and self._last.snapshot is snapshot:
            return self._last.analysis
        return None


def _capped(view: FleetView, n: int) -> FleetView:
    """The first ``n`` GPUs of the fleet (the history was sized at start), with a note."""
    import dataclasses

    snap = view.snapshot
    gpus = snap.gpus[:n]
    procs = tuple(p for p in snap.processes if p.gpu_index < n)
    note = f"fleet: {len(snap.gpus) - n} GPUs that appeared after the start are not shown"
    snap = dataclasses.replace(snap, gpus=gpus, processes=procs, notes=(*snap.notes, note))
    rows = tuple(r for r in view.rows if r.gpu_index < n)
    return FleetView(snap, rows, view.analysis)
