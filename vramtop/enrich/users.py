"""User names, and what ``display.show_other_users`` hides and how the hidden memory is counted.

Data flow: ``Enricher`` -> :func:`user_name` for every process; ``render.filters.visible_rows``
(the render process and ``--once``) calls :func:`is_other_user` and
:func:`aggregate_other_users` with the sample's rows, the enrichments they hold and the
snapshot.

"Other users" are the processes vramtop may not inspect: another UID while vramtop is not root
(the security model's same-UID rule; root inspects all, so it sees everyone as its own). With
``show_other_users = false`` their rows are hidden, but their memory stays accounted: one line
per GPU, "other users: 3 processes, 41.2 GiB", so the per-process figures still add up.
"""

from __future__ import annotations

import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vramtop.enrich.model import Enrichment
from vramtop.gpu.snapshot import Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.sanitize import clean

_GiB = 1024**3
_MiB = 1024**2


def user_name(uid: int, cache: dict[int, str] | None = None) -> str:
    """The login name of ``uid`` (its number when it has none; "" when unknown)."""
    if uid < 0:
        return ""
    if cache is not None and uid in cache:
        return cache[uid]
    try:
        name = clean(pwd.getpwuid(uid).pw_name, 32)
    except (KeyError, OverflowError):
        name = str(uid)
    if cache is not None:
        cache[uid] = name
    return name


def is_other_user(
    row: ProcessRow, enrichments: Mapping[ProcessIdentity, Enrichment] | None
) -> bool:
    """Whether the row is a known other user's process. The enrichment (which read the UID
    itself) wins over the sampler's quick verdict. A process whose owner is unknown (it
    vanished, or lives in another PID namespace) is not hidden: it is nobody's yet."""
    found = enrichments.get(row.identity) if enrichments else None
    if found is not None:
        return not found.same_user and found.uid >= 0
    return not row.same_user and bool(row.user)


@dataclass(frozen=True, slots=True)
class OtherUsers:
    """Hidden processes of other users on one GPU."""

    gpu_index: int
    processes: int
    used_bytes: int  # sum of what NVML reports for them (n/a counts as 0)

    @property
    def label(self) -> str:
        plural = "process" if self.processes == 1 else "processes"
        if self.used_bytes >= _GiB:
            amount = f"{self.used_bytes / _GiB:.1f} GiB"
        else:
            amount = f"{self.used_bytes / _MiB:.0f} MiB"
        return f"other users: {self.processes} {plural}, {amount}"


def aggregate_other_users(
    rows: Iterable[ProcessRow],
    enrichments: Mapping[ProcessIdentity, Enrichment] | None,
    snapshot: Snapshot,
) -> dict[int, OtherUsers]:
    """Per GPU index, the other users' processes (:func:`is_other_user`) and the memory they
    hold: what ``render.filters.visible_rows`` hides and counts instead. GPUs
    without such processes are absent."""
    used = {
        (p.pid, p.gpu_index): p.used_bytes if isinstance(p.used_bytes, int) else 0
        for p in snapshot.processes
    }
    counts: dict[int, set[ProcessIdentity]] = {}
    totals: dict[int, int] = {}
    for row in rows:
        if not is_other_user(row, enrichments):
            continue
        seen = counts.setdefault(row.gpu_index, set())
        if row.identity in seen:
            continue
        seen.add(row.identity)
        key = (row.identity.pid, row.gpu_index)
        totals[row.gpu_index] = totals.get(row.gpu_index, 0) + used.get(key, 0)
    return {
        gpu: OtherUsers(gpu, len(ids), totals.get(gpu, 0)) for gpu, ids in sorted(counts.items())
    }
