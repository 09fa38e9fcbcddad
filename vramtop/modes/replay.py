"""``vramtop replay FILE``: a recording through the monitor, or (``--json``) through the analysis.

Data flow: ``gpu.replay.ReplayBackend`` (CSV or NDJSON written by ``record``, ``--export-csv``
or ``--json-stream``) -> either the live monitor (``modes/monitor.py``) with a replay backend
spec, so the same sampler, analyzer and screen run on recorded samples, or, with ``--json``,
:func:`analyze_stream`: each sample -> ``analysis.stream.StreamAnalyzer`` -> the
``--once --json`` document of that sample (``export.document.to_document``, its per-process and
per-GPU ``"analysis"`` filled) plus a top-level ``"analysis"`` key -> NDJSON on stdout. That is
how a user asks "when would vramtop have warned me?" about a recording.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from vramtop.analysis.stream import StreamAnalyzer
from vramtop.config import Config
from vramtop.export.csvlog import Sample
from vramtop.export.document import analysis_to_json, to_document
from vramtop.export.ndjson import dump_line
from vramtop.gpu.factory import BackendSpec
from vramtop.gpu.replay import RecordingError, ReplayBackend
from vramtop.modes.exits import EXIT_GPU, EXIT_OK, emit, fail


def run_replay(
    path: str,
    speed: float,
    as_json: bool,
    config: Config,
    config_path: str | None,
    overrides: dict[str, object],
) -> int:
    """Open the recording (exit 1 with one line when it is not one), then play it."""
    backend = ReplayBackend(path, speed)
    try:
        backend.open()
    except RecordingError as exc:
        return fail(str(exc), EXIT_GPU)
    if as_json:
        return run_replay_json(backend, config)
    first = backend.sample()
    backend.close()
    from vramtop.modes.monitor import run_monitor

    gpu_count = max((g.index for g in first.gpus), default=0) + 1
    spec = BackendSpec("replay", t0=time.time(), speed=speed, path=os.path.abspath(path))
    return run_monitor(config, spec, gpu_count, config_path, overrides)


def run_replay_json(backend: ReplayBackend, config: Config) -> int:
    """``replay --json``: the recorded samples with their analysis, one line each."""
    try:
        for doc in analyze_stream(backend.samples(), config):
            emit(dump_line(doc))
    finally:
        backend.close()
    return EXIT_OK


def analyze_stream(samples: Iterable[Sample], config: Config) -> Iterator[dict[str, Any]]:
    """One document per sample, in order, each with its ``"analysis"``."""
    stream = StreamAnalyzer(config)
    for snapshot, rows in samples:
        result = stream.step(snapshot, rows)
        doc = to_document(snapshot, rows, analysis=result, nvml_calls=False)
        doc["analysis"] = analysis_to_json(result)
        yield doc
