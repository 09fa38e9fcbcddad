"""The JSON document of one sample (``vramtop --once --json``).

Data flow: ``Snapshot`` + ``ProcessRow``s (+ the enricher's ``Enrichment``s by identity and the
analyzer's ``AnalysisResult`` for that sample, when known) -> :func:`to_document` (plain dicts,
NA -> null) -> ``json.dumps``; the text table is ``export/text.py``. The schema is
``schema.json`` beside this module (JSON Schema, draft 2020-12) and is documented in the
README; ``schema_version`` changes only when a field changes meaning or disappears — later
issues add fields without bumping it.

This module is also the one serialisation of enrichment and analysis results: :func:`to_plain`
(dataclasses -> JSON values) is used for the per-process and per-GPU ``"analysis"`` objects, the
``replay --json`` top-level ``"analysis"`` (:func:`analysis_to_json`), and, through
:func:`process_extras` / :func:`gpu_extras`, the CSV's extra columns (``export/csvlog.py``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from vramtop import __version__
from vramtop.analysis.model import UNKNOWN, AnalysisResult, GpuAnalysis, ProcessAnalysis, Trend
from vramtop.deep import attribution
from vramtop.deep.attribution import DeepIndex
from vramtop.deep.protocol import STATE_TEXT
from vramtop.enrich.model import Container, Enrichment
from vramtop.enrich.users import OtherUsers
from vramtop.fmt import size
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import DeepProcess, ProcessIdentity, ProcessRow
from vramtop.na import to_json
from vramtop.scrape.model import ServerMetrics

SCHEMA_VERSION = 1

Enrichments = Mapping[ProcessIdentity, Enrichment]
_FIELDS: dict[type, tuple[str, ...]] = {}


def to_plain(value: object) -> object:
    """JSON-safe plain values: dataclasses become dicts (field order kept), non-finite floats
    (an ETA of infinity) null, tuples lists. ``dataclasses.asdict`` does the same with a deep
    copy of every leaf, which costs more than the analysis itself on a long replay."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int)):
        return value
    kind = type(value)
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(value):
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_plain(getattr(value, name)) for name in names}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    return value


def analysis_to_json(result: AnalysisResult) -> dict[str, Any]:
    """The analyzer's whole result as plain JSON values (``replay --json``'s ``"analysis"``);
    identities are {"pid", "start_time"}."""
    out = to_plain(result)
    assert isinstance(out, dict)
    return out


def _trend_json(trend: Trend) -> dict[str, Any]:
    """Phase and rate; no rate while the phase is unknown (too little history to tell)."""
    known = trend.phase != UNKNOWN
    return {
        "phase": trend.phase,
        "rate_mib_s": to_plain(trend.rate_mib_s) if known else None,
        "rate_stderr_mib_s": to_plain(trend.rate_stderr_mib_s) if known else None,
    }


def process_analysis_json(pa: ProcessAnalysis) -> dict[str, Any]:
    """A process's ``"analysis"``: its trend flattened, the verdict and, when it drives a
    predicted OOM, ``eta_s`` (best estimate) with the whole prediction in ``eta``."""
    return {
        **_trend_json(pa.trend),
        "verdict": pa.verdict,
        "reason": pa.reason,
        "eta_s": None if pa.eta is None else to_plain(pa.eta.eta_s),
        "eta": to_plain(pa.eta),
    }


def gpu_analysis_json(ga: GpuAnalysis) -> dict[str, Any]:
    """A GPU's ``"analysis"``; ``oom`` only when the prediction passes the alert thresholds."""
    return {
        **_trend_json(ga.trend),
        "oom": to_plain(ga.oom),
        "temp_warning": ga.temp_warning,
    }


def enrichment_json(e: Enrichment | None) -> dict[str, Any]:
    """The enricher's facts about a process; unknown (or another user's process) -> null/[]."""
    if e is None:
        return {
            "framework": None,
            "framework_version": None,
            "container": None,
            "model_files": [],
            "preallocates": False,
        }
    return {
        "framework": e.framework or None,
        "framework_version": e.framework_version or None,
        "container": to_plain(e.container),
        "model_files": to_plain(e.model_files),
        "preallocates": e.preallocates,
    }


def deep_json(dp: DeepProcess | None) -> dict[str, Any] | None:
    """A process's deep-mode state (``vramtop.report()``): null when it runs no reporter.

    ``state`` is ``ok``, ``no_torch``, ``cuda_not_initialized`` or ``error`` (with ``error``);
    ``unread`` when a reporter was found but nothing usable came from it (``problem`` says
    why). Figures are those of ``read_at``; ``problem`` set beside them: the newest read failed.
    """
    if dp is None:
        return None
    r = dp.report
    return {
        "state": "unread" if r is None else r.state,
        "error": None if r is None or not r.error else r.error,
        "problem": dp.problem or None,
        "torch_version": None if r is None else r.torch_version,
        "read_at": dp.read_at or None,
        "retries_last_minute": dp.retries_last_minute,
        "devices": [] if r is None else to_plain(r.devices),
        "ooms": [] if r is None else to_plain(r.ooms),
    }


def deep_summary(dp: DeepProcess, gpu_uuid: str) -> str:
    """One line of a process's deep-mode state on one GPU, for the text table."""
    r = dp.report
    if r is None:
        return f"reporter found, nothing usable read: {dp.problem}"
    torch = f"torch {r.torch_version}" if r.torch_version else "torch"
    if r.state != "ok":
        return f"{torch}: " + (f"error: {r.error}" if r.error else STATE_TEXT.get(r.state, r.state))
    d = attribution.device_for(r, gpu_uuid)
    if d is None:
        return f"{torch}: no PyTorch allocations on this GPU"
    return (
        f"{torch}: allocated {size(d.allocated_bytes)}, reserved {size(d.reserved_bytes)}, "
        f"active {size(d.active_bytes)}, retries {d.num_alloc_retries}, OOMs {d.num_ooms}"
    )


def container_label(c: Container | None) -> str:
    """One cell for a container: ``runtime:short-id``, or ``kubernetes:pod/UID`` without id."""
    if c is None:
        return ""
    if c.id:
        return f"{c.runtime}:{c.short_id}"
    return f"{c.runtime}:pod/{c.pod_uid}" if c.pod_uid else c.runtime


Servers = Mapping[ProcessIdentity, ServerMetrics]
"""The scraper's figures by the GPU process they belong to."""


def process_extras(
    e: Enrichment | None,
    pa: ProcessAnalysis | None,
    server: ServerMetrics | None = None,
    deep: DeepProcess | None = None,
    gpu_uuid: str = "",
) -> dict[str, object]:
    """The CSV's extra columns of a process row, from the same serialisation as the JSON;
    the deep-mode figures are those of the CUDA device that is this row's GPU."""
    out: dict[str, object] = {}
    if server is not None:
        out["kv_cache_usage"] = server.kv_cache_usage
        out["requests_waiting"] = server.waiting
    device = (
        attribution.device_for(deep.report, gpu_uuid)
        if deep is not None and deep.report is not None
        else None
    )
    if device is not None:
        out.update(
            deep_allocated_bytes=device.allocated_bytes,
            deep_reserved_bytes=device.reserved_bytes,
            deep_alloc_retries=device.num_alloc_retries,
            deep_ooms=device.num_ooms,
        )
    if e is not None:
        out["framework"] = e.framework
        out["container"] = container_label(e.container)
    if pa is not None:
        a = process_analysis_json(pa)
        out.update(
            phase=a["phase"], rate_mib_s=a["rate_mib_s"], verdict=a["verdict"], oom_eta_s=a["eta_s"]
        )
    return out


def gpu_extras(ga: GpuAnalysis) -> dict[str, object]:
    """The CSV's extra columns of a GPU row (a GPU has no verdict: that is per process)."""
    a = gpu_analysis_json(ga)
    oom = a["oom"]
    return {
        "phase": a["phase"],
        "rate_mib_s": a["rate_mib_s"],
        "oom_eta_s": oom["eta_s"] if isinstance(oom, dict) else None,
    }


def analysis_index(
    analysis: AnalysisResult | None,
) -> tuple[dict[tuple[ProcessIdentity, int], ProcessAnalysis], dict[int, GpuAnalysis]]:
    """Per-process results by (identity, GPU) and per-GPU results by index."""
    if analysis is None:
        return {}, {}
    procs = {(pa.identity, pa.gpu_index): pa for pa in analysis.processes}
    return procs, {ga.gpu_index: ga for ga in analysis.gpus}


def row_identity(proc: ProcessSample, row: ProcessRow | None) -> ProcessIdentity:
    """The identity a process is known by; without a row, its PID with an unknown start."""
    return row.identity if row is not None else ProcessIdentity(proc.pid, 0.0)


def schema_text() -> str:
    return resources.files("vramtop.export").joinpath("schema.json").read_text("utf-8")


def _gpu(
    gpu: GpuSample, snap: Snapshot, procs: list[dict[str, Any]], ga: GpuAnalysis | None
) -> dict[str, Any]:
    return {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "name": gpu.name,
        "state": gpu.state.value,
        "note": gpu.note,
        "memory": {
            "total_bytes": to_json(gpu.memory_total),
            "used_bytes": to_json(gpu.memory_used),
            "reserved_bytes": to_json(gpu.memory_reserved),
            "free_bytes": to_json(gpu.memory_free),
            "processes_sum_bytes": snap.process_memory_sum(gpu.index)
            if gpu.processes_known
            else None,
            "source": gpu.memory_source,
        },
        "utilization": {
            "gpu_percent": to_json(gpu.util_gpu),
            "memory_percent": to_json(gpu.util_memory),
        },
        "temperature_c": to_json(gpu.temperature_c),
        "power": {"draw_w": to_json(gpu.power_w), "limit_w": to_json(gpu.power_limit_w)},
        "clocks": {"sm_mhz": to_json(gpu.clock_sm_mhz), "memory_mhz": to_json(gpu.clock_mem_mhz)},
        "fan_percent": to_json(gpu.fan_percent),
        "pstate": to_json(gpu.pstate),
        "mig_mode": to_json(gpu.mig_mode),
        "mig_parent_index": gpu.parent_index,
        "gpu_instance_id": gpu.gpu_instance_id,
        "processes_note": gpu.processes_note,
        "slow_nvml_calls": {api: ms for api, ms in gpu.slow_calls},
        # null, not []: the driver failed the query (the reason is in "note").
        "processes": procs if gpu.processes_known else None,
        "analysis": None if ga is None else gpu_analysis_json(ga),
    }


def _process(
    proc: ProcessSample,
    row: ProcessRow | None,
    e: Enrichment | None,
    pa: ProcessAnalysis | None,
    server: ServerMetrics | None = None,
    deep: DeepProcess | None = None,
) -> dict[str, Any]:
    return {
        "pid": proc.pid,
        "start_time": row.identity.start_time if row and row.identity.start_time else None,
        "user": row.user if row and row.user else None,
        "command": row.command if row and row.command else None,
        "same_user": bool(row and row.same_user),
        "used_bytes": to_json(proc.used_bytes),
        "types": [t.value for t in proc.types],
        "sm_util_percent": to_json(proc.sm_util),
        "mem_util_percent": to_json(proc.mem_util),
        **enrichment_json(e),
        "analysis": None if pa is None else process_analysis_json(pa),
        "server": None if server is None else server.to_dict(),
        "deep": deep_json(deep),
    }


def to_document(
    snap: Snapshot,
    rows: Iterable[ProcessRow] = (),
    enrichments: Enrichments | None = None,
    analysis: AnalysisResult | None = None,
    others: Mapping[int, OtherUsers] | None = None,
    servers: Servers | None = None,
    *,
    nvml_calls: bool = True,
    deep: DeepIndex | None = None,
) -> dict[str, Any]:
    """The document of one sample. ``enrichments`` (by identity) and ``analysis`` (computed at
    this sample) fill the per-process and per-GPU extras; without them those are null.
    ``others``: per GPU, the other users' processes left out of ``snap`` (show_other_users).
    ``nvml_calls``: include the NVML call counters (``--once``; a stream leaves them out, or a
    month of recording would carry them on every line).
    ``deep``: deep-mode states by PID (``deep.attribution.index``)."""
    by_key = {(r.identity.pid, r.gpu_index): r for r in rows}
    enrichments = enrichments or {}
    proc_results, gpu_results = analysis_index(analysis)
    gpus = []
    for gpu in snap.gpus:
        procs = []
        for p in sorted(snap.processes_on(gpu.index), key=lambda p: p.pid):
            row = by_key.get((p.pid, p.gpu_index))
            ident = row_identity(p, row)
            pa = proc_results.get((ident, p.gpu_index))
            server = servers.get(ident) if servers else None
            dp = attribution.lookup(deep, ident) if deep and row is not None else None
            procs.append(_process(p, row, enrichments.get(ident), pa, server, dp))
        entry = _gpu(gpu, snap, procs, gpu_results.get(gpu.index))
        hidden = (others or {}).get(gpu.index)
        entry["other_users"] = (
            None
            if hidden is None
            else {"processes": hidden.processes, "used_bytes": hidden.used_bytes}
        )
        gpus.append(entry)
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "vramtop_version": __version__,
        "timestamp": snap.timestamp,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(snap.timestamp)),
        "backend": snap.backend,
        "driver_version": to_json(snap.driver_version),
        "cuda_version": to_json(snap.cuda_version),
        "nvml_version": to_json(snap.nvml_version),
        "gpus": gpus,
        "notes": list(snap.notes),
    }
    if nvml_calls:
        doc["nvml_calls"] = {
            c.function: {
                "calls": c.calls,
                "errors": c.errors,
                "mean_ms": c.mean_ms,
                "max_ms": c.max_ms,
                "last_ms": c.last_ms,
            }
            for c in snap.nvml_calls
        }
    return doc
