"""The JSON document of one sample (``vramtop --once --json``), and its plain-text table.

Data flow: ``Snapshot`` + ``ProcessRow``s -> :func:`to_document` (plain dicts, NA -> null) ->
``json.dumps`` or :func:`to_table`. The schema is ``schema.json`` beside this module (JSON
Schema, draft 2020-12) and is documented in the README; ``schema_version`` changes only when a
field changes meaning or disappears — later issues add fields without bumping it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from importlib import resources
from typing import Any

from vramtop import __version__
from vramtop.fmt import pct, size, temp, watts
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessRow
from vramtop.na import to_json

SCHEMA_VERSION = 1


def schema_text() -> str:
    return resources.files("vramtop.export").joinpath("schema.json").read_text("utf-8")


def _gpu(gpu: GpuSample, snap: Snapshot, procs: list[dict[str, Any]]) -> dict[str, Any]:
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
            "processes_sum_bytes": snap.process_memory_sum(gpu.index),
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
        "processes": procs,
    }


def _process(proc: ProcessSample, row: ProcessRow | None) -> dict[str, Any]:
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
    }


def to_document(snap: Snapshot, rows: Iterable[ProcessRow] = ()) -> dict[str, Any]:
    by_key = {(r.identity.pid, r.gpu_index): r for r in rows}
    gpus = []
    for gpu in snap.gpus:
        procs = [
            _process(p, by_key.get((p.pid, p.gpu_index)))
            for p in sorted(snap.processes_on(gpu.index), key=lambda p: p.pid)
        ]
        gpus.append(_gpu(gpu, snap, procs))
    return {
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


def to_table(snap: Snapshot, rows: Iterable[ProcessRow] = ()) -> str:
    """nvidia-smi / gpustat style plain text: a line per GPU, then its processes."""
    by_key = {(r.identity.pid, r.gpu_index): r for r in rows}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.timestamp))
    out = [
        f"vramtop {__version__}  {snap.backend}  driver {snap.driver_version}  "
        f"CUDA {snap.cuda_version}  {stamp}"
    ]
    for gpu in snap.gpus:
        if gpu.lost:
            out.append(f"[{gpu.index}] {gpu.name}  LOST  {gpu.note}".rstrip())
            continue
        out.append(
            f"[{gpu.index}] {gpu.name:<24} {size(gpu.memory_used):>6} / {size(gpu.memory_total):<6}"
            f" reserved {size(gpu.memory_reserved):<5} util {pct(gpu.util_gpu):>4}"
            f"  {temp(gpu.temperature_c):>5}  {watts(gpu.power_w)} / {watts(gpu.power_limit_w)}"
        )
        procs = sorted(snap.processes_on(gpu.index), key=lambda p: p.pid)
        if procs:
            out.append(f"    {'PID':>8}  {'USER':<10} {'TYPE':<4} {'VRAM':>7}  COMMAND")
        for p in procs:
            row = by_key.get((p.pid, p.gpu_index))
            user = (row.user if row else "") or "?"
            command = (row.command if row else "") or "N/A"
            vram = size(p.used_bytes)
            out.append(f"    {p.pid:>8}  {user[:10]:<10} {p.type_label:<4} {vram:>7}  {command}")
    for note in snap.notes:
        out.append(f"note: {note}")
    return "\n".join(out)
