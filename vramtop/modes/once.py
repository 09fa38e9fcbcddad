"""``vramtop --once [--json]``: one sample as a table or a JSON document, then exit.

Data flow: backend -> one ``Snapshot`` -> process rows (``enrich.procinfo``) -> the enricher's
core and one scrape round of the inference servers (``scrape.core``; read while the processes
are still there) -> the command-line filters and the
other-users rule (``render.filters.visible_rows``, the same helper the monitor uses) -> the
stream analyzer over that single sample (no history: every phase is "unknown", only the
temperature warning can fire) -> one round of the deep core over deep-mode reporters' sockets
(``deep.core.read_once``) -> ``export.document`` (table or JSON) on stdout, and the CSV row with
``--export-csv``. One process, no shared memory, no actor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from vramtop.config import Config
from vramtop.gpu.factory import BackendSpec
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.modes.exits import EXIT_GPU, EXIT_OK, EXIT_USAGE, emit, fail, open_backend
from vramtop.render.filters import ProcessFilter, visible_rows

if TYPE_CHECKING:
    from vramtop.enrich.model import Enrichment
    from vramtop.scrape.model import ServerMetrics

# One sample of a scenario is most telling once it has settled (servers loaded).
ONCE_WARMUP_S = 60.0


def run_once(
    spec: BackendSpec,
    as_json: bool,
    export_csv: str | None = None,
    config: Config | None = None,
    filters: ProcessFilter | None = None,
) -> int:
    """One sample, with what /proc tells about its processes and the analysis of that single
    sample."""
    from vramtop.analysis.model import AnalysisResult
    from vramtop.analysis.stream import StreamAnalyzer
    from vramtop.deep.attribution import index
    from vramtop.deep.core import read_once
    from vramtop.enrich.enricher import Enricher
    from vramtop.enrich.procinfo import ProcessTable, build_rows
    from vramtop.export.csvlog import CsvLog
    from vramtop.export.document import to_document
    from vramtop.export.logfile import LogFileError
    from vramtop.export.text import to_table

    spec = dataclasses.replace(spec, once=True)
    if spec.kind == "simulated":
        spec = dataclasses.replace(spec, t0=time.time() - ONCE_WARMUP_S)
    backend = open_backend(spec)
    if backend is None:
        return EXIT_GPU
    remote: AnalysisResult | None = None
    try:
        snapshot = backend.sample()
        rows_for = getattr(backend, "rows_for", None)
        recorded = rows_for(snapshot) if rows_for is not None else None
        local = recorded is None and spec.kind != "replay"
        if recorded is not None:
            # The fleet view: other machines' processes, as their own vramtop saw and judged
            # them (no /proc here to read, no analysis to redo from one sample).
            rows = list(recorded)
            enrichments: Mapping[ProcessIdentity, Enrichment] = {}
            remote = backend.analysis_for(snapshot)  # type: ignore[attr-defined]
            servers: dict[ProcessIdentity, ServerMetrics] = {}
        else:
            facts = ProcessTable().update(p.pid for p in snapshot.processes)
            rows = list(build_rows(snapshot, facts, {}))
            # Read /proc while the processes (a demo's children too) are still there.
            enricher = Enricher()
            enricher.update(rows)
            enrichments = enricher.known
            servers = scrape_once(snapshot, rows, enrichments, config or Config())
    finally:
        backend.close()
    config = config or Config()
    filters = filters or ProcessFilter()
    if missing := filters.missing_gpus(snapshot):
        return fail(missing, EXIT_USAGE)  # like nvidia-smi -i 99
    seen = visible_rows(
        snapshot,
        rows,
        enrichments,
        show_other_users=config.display.show_other_users,
        filters=filters,
    )
    rows, others = list(seen.rows), seen.others
    # The document lists what is shown: the GPUs kept and only the listed processes.
    keys = {(r.identity.pid, r.gpu_index) for r in rows}
    snapshot = dataclasses.replace(
        snapshot,
        gpus=tuple(g for g in snapshot.gpus if g.index in seen.gpus),
        processes=tuple(p for p in snapshot.processes if (p.pid, p.gpu_index) in keys),
    )
    prealloc = {k: e.preallocates for k, e in enrichments.items()}
    if remote is not None:
        analysis = remote
    else:
        analysis = StreamAnalyzer(config, window=1).step(snapshot, tuple(rows), prealloc)
    # Deep mode: one round over the reporters' sockets (a silent one costs at most a second);
    # only for this machine's processes, not a recording's or another host's.
    deep = index(read_once().processes) if rows and local else {}
    if export_csv is not None:
        try:
            with CsvLog(export_csv) as log:
                log.write(
                    snapshot,
                    rows,
                    enrichments=enrichments,
                    analysis=analysis,
                    servers=servers,
                    deep=deep,
                )
        except LogFileError as exc:
            return fail(str(exc), EXIT_USAGE)
    if as_json:
        doc = to_document(snapshot, rows, enrichments, analysis, others, servers, deep=deep)
        emit(json.dumps(doc, indent=2))
    else:
        tty = sys.stdout.isatty()
        width = shutil.get_terminal_size().columns if tty else None
        color = tty and not os.environ.get("NO_COLOR")
        emit(to_table(snapshot, rows, others, width=width, color=color, deep=deep))
    if nothing := filters.no_match(len(rows)):
        # An answer, not an error: the output above is complete, it just lists no process.
        print(f"vramtop: {nothing}", file=sys.stderr)
    return EXIT_OK


def scrape_once(
    snapshot: Snapshot,
    rows: list[ProcessRow],
    enrichments: Mapping[ProcessIdentity, Enrichment],
    config: Config,
) -> dict[ProcessIdentity, ServerMetrics]:
    """One scrape round for ``--once`` (none at all with ``scraping.enable = false``)."""
    if not config.scraping.enable:
        return {}
    from vramtop.messages import EnrichmentMessage, ProcessRows
    from vramtop.scrape.core import ScraperCore

    core = ScraperCore(config)
    found = EnrichmentMessage(tuple(enrichments.values()))
    core.handle([ProcessRows(0, snapshot.timestamp, tuple(rows)), found], 0.0)
    return {i: s for s in core.scrape(0.0).servers for i in s.processes}
