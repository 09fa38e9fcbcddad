"""The NDJSON stream: one JSON document per sample and line (``--json-stream``,
``vramtop record --format ndjson``, ``vramtop replay --json``), and its reader.

Data flow: ``Snapshot`` + ``ProcessRow``s (+ enrichments by identity and the sample's analysis)
-> ``export.document.to_document`` (the schema of ``--once --json``, ``schema.json``) -> one
compact line ->
:class:`NdjsonLog` (one append-only write per line, see ``export/logfile.py``) or stdout; and
back: :func:`read_ndjson` -> ``(Snapshot, rows)`` for ``vramtop replay`` (``gpu/replay.py``).
Every document carries everything the snapshot had, so a replay gives back the same samples.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from vramtop.analysis.model import AnalysisResult
from vramtop.deep.attribution import DeepIndex
from vramtop.export.csvlog import MAX_WARNINGS, Sample
from vramtop.export.document import Enrichments, Servers, to_document
from vramtop.export.logfile import LogFile
from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, ProcessType, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.na import NA, NaType
from vramtop.sanitize import clean


def format_line(
    snapshot: Snapshot,
    rows: Iterable[ProcessRow] = (),
    enrichments: Enrichments | None = None,
    analysis: AnalysisResult | None = None,
    servers: Servers | None = None,
    deep: DeepIndex | None = None,
) -> bytes:
    """One sample as one line: its document with the per-process and per-GPU extras."""
    return dump_line(
        to_document(
            snapshot, rows, enrichments, analysis, servers=servers, nvml_calls=False, deep=deep
        )
    )


def dump_line(doc: Mapping[str, Any]) -> bytes:
    # ensure_ascii keeps every line plain ASCII: no encoding surprises in pipes and logs.
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def is_document_line(first_line: bytes | str) -> bool:
    """Whether a line is a vramtop sample document (what an existing file must start with)."""
    try:
        doc = json.loads(first_line)
    except ValueError:
        return False
    return isinstance(doc, dict) and "schema_version" in doc and isinstance(doc.get("gpus"), list)


class NdjsonLog:
    """An open NDJSON recording; ``path`` "-" is stdout. Refuses (untouched) a non-empty file
    that does not start with a vramtop document
    (:class:`~vramtop.export.logfile.LogFileError`)."""

    def __init__(self, path: str, fsync: bool = False) -> None:
        self.log = LogFile(path, b"", is_document_line, kind="NDJSON", fsync=fsync)

    def write(
        self,
        snapshot: Snapshot,
        rows: Iterable[ProcessRow] = (),
        *,
        enrichments: Enrichments | None = None,
        analysis: AnalysisResult | None = None,
        servers: Servers | None = None,
        deep: DeepIndex | None = None,
    ) -> None:
        self.log.write(format_line(snapshot, rows, enrichments, analysis, servers, deep))

    def write_document(self, doc: Mapping[str, Any]) -> None:
        self.log.write(dump_line(doc))

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> NdjsonLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- reading -----------------------------------------------------------------------------------


def _int(value: object) -> int | NaType:
    if value is None:
        return NA
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"expected an integer, got {value!r:.40}")


def _optional_int(value: object) -> int | None:
    number = _int(value)
    return number if isinstance(number, int) else None


def _float(value: object) -> float | NaType:
    if value is None:
        return NA
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"expected a number, got {value!r:.40}")


def _str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return clean(value)
    raise ValueError(f"expected a string, got {value!r:.40}")


def _bool(value: object) -> bool | NaType:
    return value if isinstance(value, bool) else NA


def _version(value: object) -> str | NaType:
    return NA if value is None else _str(value)


def from_document(doc: Mapping[str, Any], backend: str = "replay") -> Sample:
    """A ``to_document`` dict back to the snapshot and process rows it was made from.
    Raises ValueError / KeyError / TypeError for a document that does not fit the schema."""
    gpus: list[GpuSample] = []
    procs: list[ProcessSample] = []
    rows: list[ProcessRow] = []
    for g in doc["gpus"]:
        index = _int(g["index"])
        if not isinstance(index, int):
            raise ValueError("GPU without an index")
        mem, util, power, clocks = g["memory"], g["utilization"], g["power"], g["clocks"]
        gpus.append(
            GpuSample(
                index=index,
                uuid=_str(g["uuid"]),
                name=_str(g["name"]),
                state=GpuState(g["state"]),
                memory_total=_int(mem["total_bytes"]),
                memory_used=_int(mem["used_bytes"]),
                memory_reserved=_int(mem["reserved_bytes"]),
                memory_free=_int(mem["free_bytes"]),
                util_gpu=_int(util["gpu_percent"]),
                util_memory=_int(util["memory_percent"]),
                temperature_c=_int(g["temperature_c"]),
                power_w=_float(power["draw_w"]),
                power_limit_w=_float(power["limit_w"]),
                clock_sm_mhz=_int(clocks["sm_mhz"]),
                clock_mem_mhz=_int(clocks["memory_mhz"]),
                fan_percent=_int(g["fan_percent"]),
                pstate=_int(g["pstate"]),
                mig_mode=_bool(g["mig_mode"]),
                note=_str(g["note"]),
                # Absent in recordings made before these fields existed.
                memory_source="host" if mem.get("source") == "host" else "device",
                parent_index=_optional_int(g.get("mig_parent_index")),
                gpu_instance_id=_optional_int(g.get("gpu_instance_id")),
                processes_note=_str(g.get("processes_note") or ""),
            )
        )
        for p in g["processes"]:
            pid = _int(p["pid"])
            if not isinstance(pid, int):
                raise ValueError("process without a pid")
            procs.append(
                ProcessSample(
                    pid=pid,
                    gpu_index=index,
                    used_bytes=_int(p["used_bytes"]),
                    types=tuple(ProcessType(t) for t in p["types"]),
                    sm_util=_int(p["sm_util_percent"]),
                    mem_util=_int(p["mem_util_percent"]),
                )
            )
            start = _float(p["start_time"])
            identity = ProcessIdentity(pid, start if isinstance(start, float) else 0.0)
            # Replayed processes are history, not live: never "ours" to inspect or signal.
            rows.append(ProcessRow(identity, index, -1, _str(p["user"]), _str(p["command"]), False))
    ts = _float(doc["timestamp"])
    if not isinstance(ts, float):
        raise ValueError("sample without a timestamp")
    snapshot = Snapshot(
        timestamp=ts,
        backend=backend,
        gpus=tuple(gpus),
        processes=tuple(procs),
        driver_version=_version(doc.get("driver_version")),
        cuda_version=_version(doc.get("cuda_version")),
        nvml_version=_version(doc.get("nvml_version")),
        notes=tuple(_str(n) for n in doc.get("notes", ())),
    )
    return snapshot, tuple(rows)


def read_ndjson(
    stream: Iterable[str], source: str, warn: Callable[[str], None], backend: str = "replay"
) -> Iterator[Sample]:
    """Samples of an NDJSON recording, from the first line on. A malformed line is skipped
    with a warning; so is an unterminated last line (the recorder was killed mid-write)."""
    bad = 0
    lineno = 0
    for line in stream:
        lineno += 1
        if not line.endswith("\n"):
            warn(f"{source}: last line is incomplete (recording interrupted); skipped it")
            break
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            sample = from_document(doc, backend)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            bad += 1
            if bad <= MAX_WARNINGS:
                warn(f"{source}: line {lineno}: skipped ({clean(str(exc), 80)})")
            continue
        yield sample
    if bad > MAX_WARNINGS:
        warn(f"{source}: {bad} malformed lines skipped in all")
