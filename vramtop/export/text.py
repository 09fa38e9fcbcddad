"""``vramtop --once`` as text: what people paste into chats and tickets.

Data flow: ``modes/once.py`` -> :func:`to_table` (one ``Snapshot``, its ``ProcessRow``s and the
other users' hidden processes) -> stdout. Laid out like gpustat / nvidia-smi: every GPU line has
its columns at the same place whatever the GPU name's length (names are padded to the longest),
process lines likewise; no line ends in spaces. On a terminal, commands are cut to its width
and the figures are coloured (unless ``NO_COLOR``); piped, every command is whole and there is
no escape code at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from vramtop import __version__
from vramtop.deep import attribution
from vramtop.deep.attribution import DeepIndex
from vramtop.enrich.users import OtherUsers
from vramtop.export.document import deep_summary
from vramtop.fmt import pct, size, temp
from vramtop.gpu.snapshot import GpuSample, Snapshot
from vramtop.messages import ProcessRow
from vramtop.na import NaType

NAME_MAX = 40  # a longer GPU name is cut: the columns after it must stay in reach
DASH = "—"
_SGR = {"bold": "1", "muted": "2", "ok": "32", "warn": "33", "crit": "31", "accent": "36"}


class _Paint:
    def __init__(self, on: bool) -> None:
        self.on = on

    def __call__(self, text: str, *styles: str) -> str:
        if not self.on or not styles or not text.strip():
            return text
        codes = ";".join(_SGR[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _watts(value: float | NaType) -> str:
    return DASH if isinstance(value, NaType) else f"{value:.0f}"


def _power(gpu: GpuSample) -> str:
    """``300 / 700 W``; what the driver does not give is a dash, never ``N/A / 700W``."""
    draw, limit = _watts(gpu.power_w), _watts(gpu.power_limit_w)
    return DASH if draw == limit == DASH else f"{draw} / {limit} W"


def _used_style(gpu: GpuSample) -> str:
    used, total = gpu.memory_used, gpu.memory_total
    if isinstance(used, NaType) or isinstance(total, NaType) or not total:
        return "bold"
    share = used / total
    return "crit" if share >= 0.95 else "warn" if share >= 0.8 else "ok"


def _util_style(gpu: GpuSample) -> str:
    util = gpu.util_gpu
    return "muted" if isinstance(util, NaType) else "ok" if util < 80 else "warn"


def to_table(
    snap: Snapshot,
    rows: Iterable[ProcessRow] = (),
    others: Mapping[int, OtherUsers] | None = None,
    *,
    width: int | None = None,
    color: bool = False,
    deep: DeepIndex | None = None,
) -> str:
    """The sample as aligned text. ``width``: the terminal's (commands are cut to it); None
    when piped (commands whole). ``color``: SGR colours (a terminal without ``NO_COLOR``).
    ``deep``: deep-mode states by PID; a reporting process gets a ``deep:`` line under it."""
    paint = _Paint(color)
    by_key = {(r.identity.pid, r.gpu_index): r for r in rows}
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.timestamp))
    out = [
        paint(f"vramtop {__version__}", "bold")
        + f"  {snap.backend}  driver {snap.driver_version}  CUDA {snap.cuda_version}  {stamp}"
    ]
    name_w = min(NAME_MAX, max((len(g.name) for g in snap.gpus), default=0))
    index_w = max((len(str(g.index)) for g in snap.gpus), default=1)
    for gpu in snap.gpus:
        head = f"[{gpu.index:>{index_w}}] {_fit(gpu.name, name_w):<{name_w}}"
        if gpu.lost:
            why = gpu.note.removeprefix("lost: ") or "the driver lost it"
            out.append(f"{paint(head, 'bold')}  {paint('LOST', 'crit', 'bold')}: {why}".rstrip())
            continue
        memory = f"{size(gpu.memory_used):>6} / {size(gpu.memory_total):<6}"
        line = (
            f"{paint(head, 'bold')}  {paint(memory, _used_style(gpu))}"
            f"  reserved {size(gpu.memory_reserved):>5}"
            f"  util {paint(f'{pct(gpu.util_gpu):>4}', _util_style(gpu))}"
            f"  {temp(gpu.temperature_c):>5}  {_power(gpu):>11}"
        )
        out.append(line.rstrip())
        hidden = (others or {}).get(gpu.index)
        if not gpu.processes_known:
            why = gpu.processes_note or gpu.note or "the driver failed the query"
            out.append(f"      processes: not known ({why})")
            continue
        procs = sorted(snap.processes_on(gpu.index), key=lambda p: p.pid)
        if procs:
            titles = f"    {'PID':>8}  {'USER':<10} {'TYPE':<4} {'VRAM':>7}  COMMAND"
            out.append(paint(titles, "muted"))
        for p in procs:
            row = by_key.get((p.pid, p.gpu_index))
            user = (row.user if row else "") or "?"
            command = (row.command if row else "") or "N/A"
            vram = size(p.used_bytes)
            lead = f"    {p.pid:>8}  {_fit(user, 10):<10} {p.type_label:<4} {vram:>7}  "
            if width is not None:
                command = _fit(command, max(8, width - len(lead)))
            out.append((lead + command).rstrip())
            dp = attribution.lookup(deep, row.identity) if deep and row is not None else None
            if dp is not None:
                out.append(f"    {'':>8}  deep: {deep_summary(dp, gpu.uuid)}")
        if hidden is not None:
            out.append(f"    {hidden.label} (hidden; show_other_users = true lists them)")
    for note in snap.notes:
        out.append(paint(f"note: {note}", "muted").rstrip())
    return "\n".join(line.rstrip() for line in out)
