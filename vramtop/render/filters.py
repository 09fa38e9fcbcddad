"""Which processes a user sees: the command-line filters (``--gpu``, ``--user``, ``--pid``,
``--only-visible``, as nvitop users expect) and the other-users rule, in one helper.

Where it sits: ``cli.py`` adds the flags (:func:`add_filter_arguments`) and builds a
:class:`ProcessFilter` (:meth:`ProcessFilter.from_args`). :func:`visible_rows` applies it and
``display.show_other_users`` to a sample; the render process (``render/controller.py``) and
``--once`` (``modes/once.py``) both call it, so the table and the one-shot output always list
the same processes. No terminal here: this module is imported by modes that have no UI.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vramtop.enrich.model import Enrichment
from vramtop.enrich.users import OtherUsers, aggregate_other_users, is_other_user
from vramtop.gpu.snapshot import GpuSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,2 (got {text!r})") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers like 0,2 (got {text!r})")
    return values


PID_MAX = 1 << 22  # the kernel's ceiling for /proc/sys/kernel/pid_max on 64-bit Linux


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= PID_MAX:
        raise argparse.ArgumentTypeError(f"expected a PID from 1 to {PID_MAX} (got {text!r})")
    return value


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("filters (live monitor)")
    group.add_argument(
        "--gpu", type=_int_list, metavar="N[,N...]", help="show only these GPU indexes, e.g. 0,2"
    )
    group.add_argument(
        "--user", action="append", metavar="NAME", help="show only this user's processes"
    )
    group.add_argument(
        "--pid", action="append", type=_pid, metavar="PID", help="show only this process"
    )
    group.add_argument(
        "--only-visible",
        action="store_true",
        help="show only the GPUs in CUDA_VISIBLE_DEVICES (indexes or UUIDs)",
    )


@dataclass(frozen=True)
class ProcessFilter:
    """Which GPUs and processes to show; empty = no restriction."""

    gpus: frozenset[int] = frozenset()
    users: frozenset[str] = frozenset()
    pids: frozenset[int] = frozenset()
    visible: tuple[str, ...] | None = None  # CUDA_VISIBLE_DEVICES entries; None = not applied

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, env: Mapping[str, str] | None = None
    ) -> ProcessFilter:
        env = os.environ if env is None else env
        visible: tuple[str, ...] | None = None
        if getattr(args, "only_visible", False):
            raw = env.get("CUDA_VISIBLE_DEVICES")
            # Unset: CUDA sees every GPU. Set (even empty): exactly the listed ones.
            if raw is not None:
                visible = tuple(p.strip() for p in raw.split(",") if p.strip())
        return cls(
            gpus=frozenset(getattr(args, "gpu", None) or ()),
            users=frozenset(getattr(args, "user", None) or ()),
            pids=frozenset(getattr(args, "pid", None) or ()),
            visible=visible,
        )

    @property
    def active(self) -> bool:
        return bool(self.gpus or self.users or self.pids or self.visible is not None)

    def gpu_shown(self, gpu: GpuSample) -> bool:
        # A MIG instance's card goes with its physical GPU's number.
        number = gpu.index if gpu.parent_index is None else gpu.parent_index
        if self.gpus and number not in self.gpus:
            return False
        if self.visible is not None:
            # CUDA stops at the first entry it cannot parse; "GPU-..." entries are UUID prefixes.
            for entry in self.visible:
                if entry.isdigit():
                    if int(entry) == number:
                        return True
                elif entry.startswith(("GPU-", "MIG-")):
                    if gpu.uuid.startswith(entry):
                        return True
                else:
                    break
            return False
        return True

    def row_shown(self, row: ProcessRow, shown_gpus: frozenset[int]) -> bool:
        if row.gpu_index not in shown_gpus:
            return False
        if self.users and row.user not in self.users:
            return False
        return not (self.pids and row.identity.pid not in self.pids)

    def missing_gpus(self, snapshot: Snapshot) -> str:
        """One line naming the ``--gpu`` indexes this machine does not have; "" when all exist."""
        have = sorted(g.index for g in snapshot.gpus)
        missing = sorted(self.gpus - set(have))
        if not missing:
            return ""
        names = ", ".join(str(g) for g in missing)
        known = f"GPUs {have[0]}-{have[-1]}" if len(have) > 1 else f"GPU {have[0]}" if have else ""
        return f"no GPU {names} on this machine" + (f" (it has {known})" if known else "")

    def no_match(self, listed: int) -> str:
        """What to say when ``--pid``/``--user`` leave nothing listed: "" when something is."""
        if listed or not (self.pids or self.users):
            return ""
        flags = [f"--pid {p}" for p in sorted(self.pids)]
        for user in sorted(self.users):
            flags.append(f"--user {user}" + ("" if _user_exists(user) else " (no such user)"))
        return "no GPU process matches " + " ".join(flags)

    def describe(self) -> str:
        """One line for the status bar, so a filtered view never looks like missing data."""
        parts = []
        if self.gpus:
            parts.append("gpu " + ",".join(str(g) for g in sorted(self.gpus)))
        if self.users:
            parts.append("user " + ",".join(sorted(self.users)))
        if self.pids:
            parts.append("pid " + ",".join(str(p) for p in sorted(self.pids)))
        if self.visible is not None:
            parts.append("CUDA_VISIBLE_DEVICES=" + ",".join(self.visible))
        return "filter: " + "; ".join(parts) if parts else ""


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Visible:
    """What :func:`visible_rows` lets through for one sample."""

    gpus: frozenset[int]  # indexes of the GPUs shown
    rows: tuple[ProcessRow, ...]  # the processes listed, in the sample's order
    others: dict[int, OtherUsers]  # per shown GPU: other users' processes hidden, counted


def visible_rows(
    snapshot: Snapshot,
    rows: Iterable[ProcessRow],
    enrichments: Mapping[ProcessIdentity, Enrichment] | None,
    *,
    show_other_users: bool,
    filters: ProcessFilter | None = None,
) -> Visible:
    """The one rule for "which processes does this user see".

    A process is listed when its GPU is shown, it passes ``filters`` (``--user``, ``--pid``)
    and, unless ``show_other_users``, it is not another user's (the security model; see
    :func:`vramtop.enrich.users.is_other_user`). Other users' processes that are hidden are
    still counted per shown GPU, whatever ``--user``/``--pid`` say, so the memory on a card
    adds up."""
    filters = filters or ProcessFilter()
    gpus = frozenset(g.index for g in snapshot.gpus if filters.gpu_shown(g))
    rows = tuple(rows)
    listed = tuple(
        r
        for r in rows
        if filters.row_shown(r, gpus) and (show_other_users or not is_other_user(r, enrichments))
    )
    others: dict[int, OtherUsers] = {}
    if not show_other_users:
        counted = aggregate_other_users(rows, enrichments, snapshot)
        others = {gpu: other for gpu, other in counted.items() if gpu in gpus}
    return Visible(gpus, listed, others)
