"""``vramtop --once [--json]``: one sample as a table or a JSON document, then exit.

Data flow: backend -> one ``Snapshot`` -> process rows (``enrich.procinfo``) -> the enricher's
core (read while the processes are still there) -> the command-line filters and the
other-users rule (``render.filters.visible_rows``, the same helper the monitor uses) -> the
stream analyzer over that single sample (no history: every phase is "unknown", only the
temperature warning can fire) -> ``export.document`` (table or JSON) on stdout, and the CSV
row with ``--export-csv``. One process, no shared memory, no actor.
"""

from __future__ import annotations

import dataclasses
import json
import time

from vramtop.config import Config
from vramtop.gpu.backend import BackendUnavailable
from vramtop.gpu.factory import BackendSpec, make_backend
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessRow
from vramtop.modes.exits import EXIT_GPU, EXIT_OK, EXIT_USAGE, fail
from vramtop.render.filters import ProcessFilter

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
    from vramtop.analysis.stream import StreamAnalyzer
    from vramtop.enrich.enricher import Enricher
    from vramtop.enrich.procinfo import ProcessTable, build_rows
    from vramtop.enrich.users import aggregate_other_users, is_other_user
    from vramtop.export.csvlog import CsvLog
    from vramtop.export.document import to_document, to_table
    from vramtop.export.logfile import LogFileError

    if spec.kind == "simulated":
        spec = dataclasses.replace(spec, t0=time.time() - ONCE_WARMUP_S)
    backend = make_backend(spec)
    try:
        backend.open()
    except BackendUnavailable as exc:
        return fail(str(exc), EXIT_GPU)
    try:
        snapshot = backend.sample()
        facts = ProcessTable().update(p.pid for p in snapshot.processes)
        rows = list(build_rows(snapshot, facts, {}))
        # Read /proc while the processes (a demo's children too) are still there.
        enricher = Enricher()
        enricher.update(rows)
        enrichments = enricher.known
    finally:
        backend.close()
    if filters is not None and filters.active:
        snapshot, rows = _filtered(snapshot, rows, filters)
    others = {}
    if config is not None and not config.display.show_other_users:
        # The security model: other users' processes are counted, not listed.
        others = aggregate_other_users(rows, enrichments, snapshot)
        shown = [r for r in rows if not is_other_user(r, enrichments)]
        snapshot = _keep_rows(snapshot, shown)
        rows = shown
    prealloc = {k: e.preallocates for k, e in enrichments.items()}
    analysis = StreamAnalyzer(config or Config(), window=1).step(snapshot, tuple(rows), prealloc)
    if export_csv is not None:
        try:
            with CsvLog(export_csv) as log:
                log.write(snapshot, rows, enrichments=enrichments, analysis=analysis)
        except LogFileError as exc:
            return fail(str(exc), EXIT_USAGE)
    if as_json:
        print(json.dumps(to_document(snapshot, rows, enrichments, analysis, others), indent=2))
    else:
        print(to_table(snapshot, rows, others))
    return EXIT_OK


def _filtered(
    snapshot: Snapshot, rows: list[ProcessRow], filters: ProcessFilter
) -> tuple[Snapshot, list[ProcessRow]]:
    """``--gpu/--user/--pid/--only-visible`` applied to one sample, as the monitor applies them."""
    gpus = tuple(g for g in snapshot.gpus if filters.gpu_shown(g))
    shown = frozenset(g.index for g in gpus)
    kept = [r for r in rows if filters.row_shown(r, shown)]
    return _keep_rows(dataclasses.replace(snapshot, gpus=gpus), kept), kept


def _keep_rows(snapshot: Snapshot, rows: list[ProcessRow]) -> Snapshot:
    """The snapshot with only the processes of ``rows``."""
    keys = {(r.identity.pid, r.gpu_index) for r in rows}
    procs = tuple(p for p in snapshot.processes if (p.pid, p.gpu_index) in keys)
    return dataclasses.replace(snapshot, processes=procs)
