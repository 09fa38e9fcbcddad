"""The CSV recording: ``vramtop record FILE`` and ``vramtop --export-csv FILE``, and its reader.

Data flow: ``Snapshot`` + ``ProcessRow``s (+ the enricher's results by identity and the
analyzer's result for that sample, turned into the extra columns by :func:`derived_extras` with
the JSON document's serialisation, ``export/document.py``) -> :func:`format_sample` (one block
of lines) -> :class:`CsvLog` (one append-only write
per sample, see ``export/logfile.py``); and back: :func:`read_csv` -> ``(Snapshot, rows)`` for
``vramtop replay`` (``gpu/replay.py``).

One row per GPU per sample (``row`` = ``gpu``) and one per process per sample (``row`` =
``process``); the rows of one sample share ``timestamp``. An empty cell is "not available" (NA).
The header is :data:`HEADER_LINE`, documented in the README; a file with another header is never
appended to. Numbers are written exactly (floats in their shortest round-trip form), so a replay
gives back the recorded values, not rounded ones. Driver versions, snapshot-level notes and
whether the process belonged to the recording user are not in the CSV (the NDJSON format has
them).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import Enum
from typing import Final

from vramtop.analysis.model import AnalysisResult
from vramtop.deep import attribution
from vramtop.deep.attribution import DeepIndex
from vramtop.export.document import (
    Enrichments,
    Servers,
    analysis_index,
    gpu_extras,
    process_extras,
)
from vramtop.export.logfile import LogFile
from vramtop.gpu.snapshot import GpuSample, GpuState, ProcessSample, ProcessType, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.na import NA, NaType
from vramtop.sanitize import clean

GPU_COLUMNS: Final = (
    "gpu_index",
    "gpu_uuid",
    "gpu_name",
    "gpu_state",
    "memory_total_bytes",
    "memory_used_bytes",
    "memory_reserved_bytes",
    "memory_free_bytes",
    "util_gpu_percent",
    "util_memory_percent",
    "temperature_c",
    "power_w",
    "power_limit_w",
    "clock_sm_mhz",
    "clock_mem_mhz",
    "fan_percent",
    "pstate",
    "mig_mode",
)
PROCESS_COLUMNS: Final = (
    "pid",
    "start_time",
    "user",
    "command",
    "process_used_bytes",
    "type",
    "sm_util_percent",
    "mem_util_percent",
)
# Filled from the extras the caller passes (enricher / analyzer results); empty otherwise.
EXTRA_COLUMNS: Final = (
    "framework",
    "container",
    "phase",
    "rate_mib_s",
    "verdict",
    "oom_eta_s",
    "kv_cache_usage",
    "requests_waiting",
    "deep_allocated_bytes",
    "deep_reserved_bytes",
    "deep_alloc_retries",
    "deep_ooms",
)
COLUMNS: Final = (
    "time",
    "timestamp",
    "row",
    *GPU_COLUMNS,
    *PROCESS_COLUMNS,
    *EXTRA_COLUMNS,
    "note",
)
HEADER_LINE: Final = ",".join(COLUMNS)

_IX = {name: i for i, name in enumerate(COLUMNS)}
_N = len(COLUMNS)
_GPU_AT = _IX["gpu_index"]
_PROC_AT = _IX["pid"]
_EXTRA_AT = _IX["framework"]
_TYPES = {"C": ProcessType.COMPUTE, "G": ProcessType.GRAPHICS, "M": ProcessType.MPS}
MAX_WARNINGS = 5

ExtrasKey = ProcessIdentity | tuple[int, int]
"""Extras are looked up by ``(pid, gpu_index)`` first, then by the process identity."""
Extras = Mapping[ExtrasKey, Mapping[str, object]]
Sample = tuple[Snapshot, tuple[ProcessRow, ...]]


def is_csv_header(first_line: bytes | str) -> bool:
    text = first_line.decode("utf-8", "replace") if isinstance(first_line, bytes) else first_line
    return text.rstrip("\r\n") == HEADER_LINE


# -- writing -----------------------------------------------------------------------------------


def _cell(value: object) -> str:
    if value is None or isinstance(value, NaType):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, str):
        return clean(value)  # never a newline inside a cell: one line is one record
    return str(value)


def _extras(values: Mapping[str, object] | None) -> list[str]:
    if not values:
        return [""] * len(EXTRA_COLUMNS)
    return [_cell(values.get(name)) for name in EXTRA_COLUMNS]


def derived_extras(
    rows: Iterable[ProcessRow],
    enrichments: Enrichments | None = None,
    analysis: AnalysisResult | None = None,
    servers: Servers | None = None,
    deep: DeepIndex | None = None,
    uuids: Mapping[int, str] | None = None,
) -> tuple[dict[ExtrasKey, dict[str, object]], dict[int, dict[str, object]]]:
    """The extra columns (framework ... deep_ooms) of every process and GPU row of a sample:
    by ``(pid, gpu_index)`` for processes, by GPU index for GPUs. ``uuids``: GPU index -> UUID,
    which picks a deep-mode report's device for a row."""
    proc_results, gpu_results = analysis_index(analysis)
    extras: dict[ExtrasKey, dict[str, object]] = {}
    seen = set()
    for r in rows:
        key = (r.identity, r.gpu_index)
        seen.add(key)
        e = enrichments.get(r.identity) if enrichments else None
        pa = proc_results.get(key)
        server = servers.get(r.identity) if servers else None
        dp = attribution.lookup(deep, r.identity) if deep else None
        if e is not None or pa is not None or server is not None or dp is not None:
            uuid = (uuids or {}).get(r.gpu_index, "")
            extras[(r.identity.pid, r.gpu_index)] = process_extras(e, pa, server, dp, uuid)
    for key, pa in proc_results.items():
        if key not in seen:  # a process without a row: known by PID alone
            extras.setdefault((pa.identity.pid, pa.gpu_index), process_extras(None, pa))
    return extras, {i: gpu_extras(ga) for i, ga in gpu_results.items()}


def iso_time(ts: float) -> str:
    """ISO 8601 UTC with milliseconds: 2024-05-01T03:12:45.250Z."""
    secs, millis = divmod(int(ts * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{millis:03d}Z"


def _gpu_cells(g: GpuSample) -> list[str]:
    return [
        _cell(v)
        for v in (
            g.index,
            g.uuid,
            g.name,
            g.state,
            g.memory_total,
            g.memory_used,
            g.memory_reserved,
            g.memory_free,
            g.util_gpu,
            g.util_memory,
            g.temperature_c,
            g.power_w,
            g.power_limit_w,
            g.clock_sm_mhz,
            g.clock_mem_mhz,
            g.fan_percent,
            g.pstate,
            g.mig_mode,
        )
    ]


def format_sample(
    snapshot: Snapshot,
    rows: Iterable[ProcessRow] = (),
    extras: Extras | None = None,
    gpu_extras: Mapping[int, Mapping[str, object]] | None = None,
    enrichments: Enrichments | None = None,
    analysis: AnalysisResult | None = None,
    servers: Servers | None = None,
    deep: DeepIndex | None = None,
) -> bytes:
    """The whole sample as CSV lines (GPU rows, then process rows by GPU and PID). The extra
    columns come from ``enrichments`` / ``analysis`` / ``deep``, or as given in ``extras`` /
    ``gpu_extras`` (which win)."""
    rows = tuple(rows)
    by_key = {(r.identity.pid, r.gpu_index): r for r in rows}
    if enrichments or analysis is not None or servers or deep:
        uuids = {g.index: g.uuid for g in snapshot.gpus}
        derived, derived_gpu = derived_extras(rows, enrichments, analysis, servers, deep, uuids)
        extras = {**derived, **(extras or {})}
        gpu_extras = {**derived_gpu, **(gpu_extras or {})}
    extras = extras or {}
    gpu_extras = gpu_extras or {}
    stamp = [iso_time(snapshot.timestamp), repr(float(snapshot.timestamp))]
    blank_process = [""] * len(PROCESS_COLUMNS)
    uuids = {g.index: g.uuid for g in snapshot.gpus}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for g in snapshot.gpus:
        writer.writerow(
            [
                *stamp,
                "gpu",
                *_gpu_cells(g),
                *blank_process,
                *_extras(gpu_extras.get(g.index)),
                _cell(g.note),
            ]
        )
    blank_gpu = [""] * (len(GPU_COLUMNS) - 2)
    for p in sorted(snapshot.processes, key=lambda p: (p.gpu_index, p.pid)):
        row = by_key.get((p.pid, p.gpu_index))
        extra = extras.get((p.pid, p.gpu_index))
        if extra is None and row is not None:
            extra = extras.get(row.identity)
        writer.writerow(
            [
                *stamp,
                "process",
                str(p.gpu_index),
                _cell(uuids.get(p.gpu_index, "")),
                *blank_gpu,
                str(p.pid),
                _cell(row.identity.start_time if row and row.identity.start_time else None),
                _cell(row.user if row else None),
                _cell(row.command if row else None),
                _cell(p.used_bytes),
                p.type_label if p.types else "",
                _cell(p.sm_util),
                _cell(p.mem_util),
                *_extras(extra),
                "",
            ]
        )
    return out.getvalue().encode("utf-8")


class CsvLog:
    """An open CSV recording. ``write`` appends one whole sample; ``path`` "-" is stdout.

    Raises :class:`~vramtop.export.logfile.LogFileError` when the file exists with another
    header (it is left untouched) or cannot be opened.
    """

    def __init__(self, path: str, fsync: bool = False) -> None:
        self.log = LogFile(
            path, (HEADER_LINE + "\n").encode(), is_csv_header, kind="CSV", fsync=fsync
        )

    def write(
        self,
        snapshot: Snapshot,
        rows: Iterable[ProcessRow] = (),
        extras: Extras | None = None,
        gpu_extras: Mapping[int, Mapping[str, object]] | None = None,
        *,
        enrichments: Enrichments | None = None,
        analysis: AnalysisResult | None = None,
        servers: Servers | None = None,
        deep: DeepIndex | None = None,
    ) -> None:
        """Append one whole sample; see :func:`format_sample` for the extra columns."""
        self.log.write(
            format_sample(snapshot, rows, extras, gpu_extras, enrichments, analysis, servers, deep)
        )

    def close(self) -> None:
        self.log.close()

    def __enter__(self) -> CsvLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- reading -----------------------------------------------------------------------------------


def _int(text: str) -> int | NaType:
    return int(text) if text else NA


def _float(text: str) -> float | NaType:
    return float(text) if text else NA


def _bool(text: str) -> bool | NaType:
    return NA if not text else text == "true"


class _Strings:
    """clean() with a small cache: commands and names repeat in every sample."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        got = self._seen.get(text)
        if got is None:
            if len(self._seen) > 4096:
                self._seen.clear()
            got = self._seen[text] = clean(text)
        return got


def _gpu(f: list[str], s: _Strings) -> GpuSample:
    i = _GPU_AT
    return GpuSample(
        index=int(f[i]),
        uuid=s(f[i + 1]),
        name=s(f[i + 2]),
        state=GpuState(f[i + 3] or "ok"),
        memory_total=_int(f[i + 4]),
        memory_used=_int(f[i + 5]),
        memory_reserved=_int(f[i + 6]),
        memory_free=_int(f[i + 7]),
        util_gpu=_int(f[i + 8]),
        util_memory=_int(f[i + 9]),
        temperature_c=_int(f[i + 10]),
        power_w=_float(f[i + 11]),
        power_limit_w=_float(f[i + 12]),
        clock_sm_mhz=_int(f[i + 13]),
        clock_mem_mhz=_int(f[i + 14]),
        fan_percent=_int(f[i + 15]),
        pstate=_int(f[i + 16]),
        mig_mode=_bool(f[i + 17]),
        note=s(f[-1]),
    )


def _process(f: list[str], s: _Strings) -> tuple[ProcessSample, ProcessRow]:
    i = _PROC_AT
    pid, gpu = int(f[i]), int(f[_GPU_AT])
    types = tuple(_TYPES[t] for t in f[i + 5].split("+")) if f[i + 5] else ()
    sample = ProcessSample(
        pid=pid,
        gpu_index=gpu,
        used_bytes=_int(f[i + 4]),
        types=types,
        sm_util=_int(f[i + 6]),
        mem_util=_int(f[i + 7]),
    )
    start = float(f[i + 1]) if f[i + 1] else 0.0
    # Replayed processes are history, not live: never "ours" to inspect or signal.
    row = ProcessRow(ProcessIdentity(pid, start), gpu, -1, s(f[i + 2]), s(f[i + 3]), False)
    return sample, row


def read_csv(
    stream: Iterable[str], source: str, warn: Callable[[str], None], backend: str = "replay"
) -> Iterator[Sample]:
    """Samples of a CSV recording whose header line was already consumed from ``stream``
    (opened with ``newline=""``). A malformed line is skipped with a warning; an unterminated
    last line (the recorder was killed mid-write) drops the sample it belongs to."""
    partial: list[str] = []

    def complete_lines() -> Iterator[str]:
        for line in stream:
            if line.endswith("\n"):
                yield line
            else:
                partial.append(line)
                return

    strings = _Strings()
    bad = 0
    stamp = ""
    gpus: list[GpuSample] = []
    procs: list[ProcessSample] = []
    rows: list[ProcessRow] = []

    def emit() -> Sample:
        snap = Snapshot(float(stamp), backend, tuple(gpus), tuple(procs))
        return snap, tuple(rows)

    reader = csv.reader(complete_lines())
    for fields in reader:
        try:
            if len(fields) != _N:
                raise ValueError(f"{len(fields)} fields, expected {_N}")
            if fields[1] != stamp:
                if gpus or procs:
                    yield emit()
                float(fields[1])
                stamp, gpus, procs, rows = fields[1], [], [], []
            kind = fields[2]
            if kind == "gpu":
                gpus.append(_gpu(fields, strings))
            elif kind == "process":
                sample, row = _process(fields, strings)
                procs.append(sample)
                rows.append(row)
            else:
                raise ValueError(f"unknown row kind {kind!r}")
        except (ValueError, KeyError) as exc:
            bad += 1
            if bad <= MAX_WARNINGS:
                warn(f"{source}: line {reader.line_num + 1}: skipped ({clean(str(exc), 80)})")
    if bad > MAX_WARNINGS:
        warn(f"{source}: {bad} malformed lines skipped in all")
    if partial:
        head = partial[0]
        # Samples are written whole, so a cut line belongs to the last, incomplete sample.
        parts = head.split(",", 2)
        if len(parts) >= 3:
            same = parts[1] == stamp
        else:  # cut inside the timestamp: assume the worst, the sample is incomplete
            same = len(parts) < 2 or stamp.startswith(parts[1])
        warn(
            f"{source}: last line is incomplete (recording interrupted); skipped"
            + (" the last sample" if same else " it")
        )
        if same:
            return
    if gpus or procs:
        yield emit()
