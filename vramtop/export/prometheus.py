"""Prometheus exposition of one sample's document, for ``vramtop exporter``.

Data flow: the exporter's actor (``actors/metrics.py``) keeps the newest frame (a sample, the
analysis of that sample, the enrichment and whatever else reached it) and, when Prometheus
scrapes, builds the ``--once --json`` document (``export/document.py``) and turns it here into
metric families. A scrape therefore costs no NVML call, and every series says what the JSON
says; ``fleet.py`` reads the series back into documents for the fleet view.

Naming follows Prometheus practice: a ``vramtop_`` prefix, base units as suffixes (``_bytes``,
``_seconds``, ``_ratio``, ``_celsius``, ``_watts``), ``_total`` for counters, ``_info`` for
label-only series. A phase or verdict is one series with the value as a label
(``vramtop_process_phase{phase="growing"} 1``), so an alert reads ``== 1``. GPU series carry
``hostname``, ``gpu`` (index), ``uuid`` and ``model``; process series ``hostname``, ``gpu``,
``uuid``, ``pid``, ``user``, ``command`` (short), ``framework``, ``container`` and, on
Kubernetes, ``pod``/``namespace``. Only the ``max_process_series`` largest processes get series
(the number left out is ``vramtop_process_series_dropped``); an exited process's series are
simply absent from the next scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

MIB = 1 << 20
GPU_LABELS = ("hostname", "gpu", "uuid", "model")
PROC_LABELS = (
    "hostname",
    "gpu",
    "uuid",
    "pid",
    "user",
    "command",
    "framework",
    "container",
    "pod",
    "namespace",
)
COMMAND_CHARS = 60  # the command label is for telling processes apart, not the whole argv


class _Families:
    """Metric families by name, created on first use, in a stable order."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def gauge(self, name: str, doc: str, labels: tuple[str, ...]) -> GaugeMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = self._by_name[name] = GaugeMetricFamily(name, doc, labels=labels)
        assert isinstance(fam, GaugeMetricFamily)
        return fam

    def counter(self, name: str, doc: str, labels: tuple[str, ...]) -> CounterMetricFamily:
        fam = self._by_name.get(name)
        if fam is None:
            fam = self._by_name[name] = CounterMetricFamily(name, doc, labels=labels)
        assert isinstance(fam, CounterMetricFamily)
        return fam

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._by_name.values())


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def short_command(command: str | None) -> str:
    text = " ".join((command or "").split())
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"


def _container(p: Mapping[str, Any]) -> tuple[str, str, str]:
    """(container label, pod, namespace) of a process document."""
    c = p.get("container")
    if not isinstance(c, dict):
        return "", "", ""
    runtime, cid = str(c.get("runtime") or ""), str(c.get("id") or "")
    label = f"{runtime}:{cid[:12]}" if cid else runtime
    return label, str(c.get("pod_name") or c.get("pod") or ""), str(c.get("namespace") or "")


def families(doc: Mapping[str, Any], hostname: str, max_process_series: int) -> list[Metric]:
    """Every metric family of one sample's document."""
    out = _Families()
    info = out.gauge(
        "vramtop_build_info",
        "vramtop version, backend and driver of this exporter (value 1)",
        ("hostname", "version", "backend", "driver_version"),
    )
    info.add_metric(
        [
            hostname,
            str(doc.get("vramtop_version", "")),
            str(doc.get("backend", "")),
            str(doc.get("driver_version") or ""),
        ],
        1.0,
    )
    out.gauge(
        "vramtop_sample_timestamp_seconds",
        "When the sample being exported was taken (Unix time)",
        ("hostname",),
    ).add_metric([hostname], float(doc.get("timestamp") or 0.0))
    processes: list[tuple[float, list[str], Mapping[str, Any], Mapping[str, Any]]] = []
    for g in doc.get("gpus", []):
        labels = [hostname, str(g["index"]), str(g.get("uuid") or ""), str(g.get("name") or "")]
        _gpu(out, g, labels)
        for p in g.get("processes") or ():  # null: the driver failed the query
            used = _num(p.get("used_bytes")) or 0.0
            processes.append((used, labels, g, p))
    processes.sort(key=lambda item: -item[0])
    kept = processes[:max_process_series]
    for _, gpu_labels, _, p in kept:
        _process(out, gpu_labels, p)
    out.gauge(
        "vramtop_process_series_dropped",
        "GPU processes left without series by [exporter] max_process_series (smallest first)",
        ("hostname",),
    ).add_metric([hostname], float(len(processes) - len(kept)))
    return list(out)


def _gpu(out: _Families, g: Mapping[str, Any], labels: list[str]) -> None:
    out.gauge(
        "vramtop_gpu_info",
        "A GPU and its state (ok, lost, not responding...)",
        (*GPU_LABELS, "state"),
    ).add_metric([*labels, str(g.get("state", ""))], 1.0)
    memory = g.get("memory") or {}
    for key, name, text in (
        ("total_bytes", "total", "Memory on the card"),
        ("used_bytes", "used", "Memory in use, as NVML reports it"),
        ("reserved_bytes", "reserved", "Memory reserved by the driver"),
        ("free_bytes", "free", "Memory free, as NVML reports it"),
    ):
        value = _num(memory.get(key))
        if value is not None:
            out.gauge(f"vramtop_gpu_memory_{name}_bytes", text, GPU_LABELS).add_metric(
                labels, value
            )
    util = g.get("utilization") or {}
    for key, name, text in (
        ("gpu_percent", "vramtop_gpu_utilization_ratio", "SM utilisation, 0-1"),
        ("memory_percent", "vramtop_gpu_memory_bandwidth_ratio", "Memory bandwidth use, 0-1"),
    ):
        value = _num(util.get(key))
        if value is not None:
            out.gauge(name, text, GPU_LABELS).add_metric(labels, value / 100.0)
    for value, name, text in (
        (_num(g.get("temperature_c")), "vramtop_gpu_temperature_celsius", "GPU temperature"),
        (_num((g.get("power") or {}).get("draw_w")), "vramtop_gpu_power_watts", "Power draw"),
        (
            _num((g.get("power") or {}).get("limit_w")),
            "vramtop_gpu_power_limit_watts",
            "Power limit",
        ),
    ):
        if value is not None:
            out.gauge(name, text, GPU_LABELS).add_metric(labels, value)
    if g.get("processes") is not None:  # null (the query failed) is no count, not 0
        out.gauge("vramtop_gpu_processes", "GPU processes listed", GPU_LABELS).add_metric(
            labels, float(len(g["processes"]))
        )
    analysis = g.get("analysis")
    if not isinstance(analysis, dict):
        return
    _phase(out, "gpu", GPU_LABELS, labels, analysis)
    oom = analysis.get("oom")
    if isinstance(oom, dict):
        _eta(out, "gpu", GPU_LABELS, labels, oom)


def _phase(
    out: _Families, kind: str, names: tuple[str, ...], labels: list[str], a: Mapping[str, Any]
) -> None:
    out.gauge(
        f"vramtop_{kind}_phase",
        "Memory phase (stable, growing, shrinking, volatile, unknown) as the phase label",
        (*names, "phase"),
    ).add_metric([*labels, str(a.get("phase", "unknown"))], 1.0)
    rate = _num(a.get("rate_mib_s"))
    if rate is not None:
        out.gauge(
            f"vramtop_{kind}_memory_growth_bytes_per_second",
            "Sustained memory growth rate (negative: shrinking)",
            names,
        ).add_metric(labels, rate * MIB)


def _eta(
    out: _Families, kind: str, names: tuple[str, ...], labels: list[str], oom: Mapping[str, Any]
) -> None:
    for key, suffix, text in (
        ("eta_s", "", "Predicted time to out of memory, best estimate"),
        ("eta_low_s", "_low", "Predicted time to out of memory, low end of the range"),
        ("eta_high_s", "_high", "Predicted time to out of memory, high end of the range"),
    ):
        value = _num(oom.get(key))
        if value is not None:
            out.gauge(f"vramtop_{kind}_oom_eta{suffix}_seconds", text, names).add_metric(
                labels, value
            )
    confidence = _num(oom.get("confidence"))
    if confidence is not None:
        out.gauge(
            f"vramtop_{kind}_oom_confidence_ratio",
            "How often a prediction at this confidence came true within its range, 0-1",
            names,
        ).add_metric(labels, confidence)


def _process(out: _Families, gpu_labels: list[str], p: Mapping[str, Any]) -> None:
    container, pod, namespace = _container(p)
    labels = [
        *gpu_labels[:3],
        str(p.get("pid")),
        str(p.get("user") or ""),
        short_command(p.get("command")),
        str(p.get("framework") or ""),
        container,
        pod,
        namespace,
    ]
    out.gauge(
        "vramtop_process_info",
        "A GPU process: its start time identifies it with its PID (value 1)",
        (*PROC_LABELS, "start_time", "same_user"),
    ).add_metric([*labels, repr(p.get("start_time") or 0.0), str(bool(p.get("same_user")))], 1.0)
    used = _num(p.get("used_bytes"))
    if used is not None:
        memory = out.gauge(
            "vramtop_process_memory_bytes", "GPU memory the process holds", PROC_LABELS
        )
        memory.add_metric(labels, used)
    sm = _num(p.get("sm_util_percent"))
    if sm is not None:
        out.gauge(
            "vramtop_process_utilization_ratio", "The process's SM utilisation, 0-1", PROC_LABELS
        ).add_metric(labels, sm / 100.0)
    analysis = p.get("analysis")
    if isinstance(analysis, dict):
        _phase(out, "process", PROC_LABELS, labels, analysis)
        out.gauge(
            "vramtop_process_verdict",
            "vramtop's verdict (OK, TIGHT, OOM risk...) as the verdict label",
            (*PROC_LABELS, "verdict"),
        ).add_metric([*labels, str(analysis.get("verdict", ""))], 1.0)
        eta = analysis.get("eta")
        if isinstance(eta, dict):
            _eta(out, "process", PROC_LABELS, labels, eta)
    _extras(out, labels, p)


def _extras(out: _Families, labels: list[str], p: Mapping[str, Any]) -> None:
    """Lineage, the inference server's figures and deep mode's, where the document has them."""
    lineage = p.get("lineage")
    if isinstance(lineage, dict) and (restarts := _num(lineage.get("restarts"))) is not None:
        out.gauge(
            "vramtop_process_restarts",
            "Earlier incarnations of this job (same user, command and GPU) that vanished",
            PROC_LABELS,
        ).add_metric(labels, restarts)
    server = p.get("server")
    if isinstance(server, dict):
        for key, name, text in (
            ("kv_cache_usage", "vramtop_process_kv_cache_usage_ratio", "KV cache in use, 0-1"),
            ("running", "vramtop_process_requests_running", "Requests being served"),
            ("waiting", "vramtop_process_requests_waiting", "Requests queued"),
        ):
            value = _num(server.get(key))
            if value is not None:
                gauge = out.gauge(name, f"{text} (the inference server's own)", PROC_LABELS)
                gauge.add_metric(labels, value)
    deep = p.get("deep")
    if isinstance(deep, dict):
        devices = [d for d in deep.get("devices") or [] if isinstance(d, dict)]
        for key, name, text in (
            ("allocated_bytes", "vramtop_process_torch_allocated_bytes", "PyTorch: live tensors"),
            ("reserved_bytes", "vramtop_process_torch_reserved_bytes", "PyTorch: cached + live"),
        ):
            values = [v for d in devices if (v := _num(d.get(key))) is not None]
            if values:
                out.gauge(name, text, PROC_LABELS).add_metric(labels, sum(values))
        retries = [v for d in devices if (v := _num(d.get("num_alloc_retries"))) is not None]
        if retries:
            out.counter(
                "vramtop_process_torch_alloc_retries",
                "PyTorch: allocations retried after freeing cache",
                PROC_LABELS,
            ).add_metric(labels, sum(retries))


def exposition(metrics: Iterable[Metric]) -> bytes:
    """The text format (what a scrape returns), for tests and ``--once`` style dumps."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _Fixed:
        def __init__(self, fams: list[Metric]) -> None:
            self.fams = fams

        def collect(self) -> list[Metric]:
            return self.fams

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(metrics)))  # type: ignore[arg-type]
    return bytes(generate_latest(registry))
