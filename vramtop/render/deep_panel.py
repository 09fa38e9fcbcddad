"""The detail panel's deep-mode lines: the PyTorch caching allocator's view of one process.

Where it sits: ``detail.py`` calls :func:`deep_lines` for the selected :class:`ProcView`, whose
``deep`` came from the deep actor's :class:`DeepStateMessage` (``render/model.py``). It shows, for
the CUDA device that is this row's GPU: allocated / active / reserved as one bar, the peaks,
fragmentation (reserved − allocated) with the inactive split blocks, retries and OOMs, the gap
between what NVML sees and what PyTorch reserved, and the last OOM moment. States without
figures ("CUDA not initialised yet", "torch not installed", a failed read) are said in words.
"""

from __future__ import annotations

import math
import time

from vramtop.deep.attribution import device_for
from vramtop.deep.protocol import ERROR, OK, STATE_TEXT, DeviceStats, OomEvent
from vramtop.fmt import size
from vramtop.render.grid import Style
from vramtop.render.model import ProcView
from vramtop.render.widgets import duration

TEXT = Style(fg="text", bg="panel")
NOTE = Style(fg="muted", bg="panel")
WARN = Style(fg="warn", bg="panel", bold=True)
CRIT = Style(fg="crit", bg="panel", bold=True)

Line = tuple[str, Style]

DEEP_HINT = (
    "deep mode: not reporting — add `import vramtop; vramtop.report()` to the program "
    "or start it with `vramtop wrap -- CMD`"
)
GAP_WHERE = "outside the caching allocator (CUDA context, cuBLAS workspaces, NCCL)"


def human(value: float) -> str:
    """``2.0 GiB``, ``0.4 GiB``, ``64 MiB``: the units of PyTorch's own OOM message, in GiB
    from a tenth of one, so the failed request and the free memory read in one unit."""
    if value >= (1 << 30) // 10:
        return f"{value / (1 << 30):.1f} GiB"
    if value >= 1 << 20:
        return f"{value / (1 << 20):.0f} MiB"
    return f"{value / 1024:.0f} KiB" if value > 0 else "0 B"


def oom_line(event: OomEvent) -> str:
    """``OOM inside PyTorch at 14:02:11: tried to allocate 2.0 GiB with 0.4 GiB free``."""
    at = time.strftime("%H:%M:%S", time.localtime(event.at))
    free = "" if event.free_bytes is None else f" with {human(event.free_bytes)} free"
    return f"OOM inside PyTorch at {at}: tried to allocate {human(event.requested_bytes)}{free}"


def allocator_bar(d: DeviceStats, width: int, accessible: bool) -> str:
    """allocated (█) inside active (▓) inside reserved (░), scaled to the largest."""
    width = max(4, width)
    whole = max(d.reserved_bytes, d.active_bytes, d.allocated_bytes, 1)
    marks = "#+." if accessible else "█▓░"
    alloc = round(width * d.allocated_bytes / whole)
    active = max(alloc, round(width * max(d.active_bytes, d.allocated_bytes) / whole))
    reserved = max(active, round(width * d.reserved_bytes / whole))
    body = marks[0] * alloc + marks[1] * (active - alloc) + marks[2] * (reserved - active)
    return "[" + body.ljust(width) + "]"


def _field(label: str, value: str, style: Style = TEXT) -> Line:
    return f"{label:<12}{value}", style


def _fit(lines: list[Line], width: int) -> list[Line]:
    """Long lines broken at spaces, continued under the value column."""
    out: list[Line] = []
    for text, style in lines:
        while len(text) > width > 24:
            cut = text.rfind(" ", 12, width)
            if cut <= 12:
                cut = width
            out.append((text[:cut], style))
            text = " " * 12 + text[cut:].lstrip()
        out.append((text, style))
    return out


def deep_lines(
    view: ProcView, width: int, accessible: bool, now: float | None = None
) -> list[Line]:
    """The panel's lines for ``view``'s deep-mode state, each at most ``width`` cells."""
    return _fit(_lines(view, width, accessible, now), width)


def _lines(view: ProcView, width: int, accessible: bool, now: float | None) -> list[Line]:
    deep = view.deep
    if deep is None:
        return [(DEEP_HINT, NOTE)]
    now = time.time() if now is None else now
    report = deep.report
    if report is None:
        return [_field("deep mode", f"reporter found, nothing usable read: {deep.problem}", WARN)]
    age = duration(max(0.0, now - deep.read_at)) if deep.read_at else "?"
    torch = f"torch {report.torch_version}" if report.torch_version else "torch"
    out: list[Line] = []
    stale = f"   last read failed: {deep.problem}" if deep.problem else ""
    out.append(_field("deep mode", f"{torch}, read {age} ago{stale}", WARN if stale else TEXT))
    if report.state == ERROR:
        out.append(_field("", f"error: {report.error}", WARN))
    elif report.state != OK:
        out.append(_field("", STATE_TEXT.get(report.state, report.state), NOTE))
    else:
        gpu_uuid = view.gpu.uuid if view.gpu is not None else ""
        device = device_for(report, gpu_uuid)
        if device is None:
            used = ", ".join(f"cuda:{d.index}" for d in report.devices) or "none yet"
            out.append(
                _field("", f"no PyTorch allocations on this GPU (devices used: {used})", NOTE)
            )
        else:
            out.extend(_device_lines(view, device, deep.retries_last_minute, width, accessible))
    for event in report.ooms[-2:]:
        out.append((oom_line(event), CRIT))
    return out


def _device_lines(
    view: ProcView, d: DeviceStats, retries_minute: int, width: int, accessible: bool
) -> list[Line]:
    bar_w = max(10, min(40, width - 12 - 52))
    out = [
        _field(
            "allocator",
            f"{allocator_bar(d, bar_w, accessible)} allocated {size(d.allocated_bytes)}"
            f"  active {size(d.active_bytes)}  reserved {size(d.reserved_bytes)}",
        ),
        _field(
            "peaks",
            f"allocated {size(d.allocated_peak_bytes)}  reserved {size(d.reserved_peak_bytes)}"
            f"   cuda:{d.index}  {d.allocations} tensors in {d.segments} segments",
        ),
        _field(
            "cache",
            f"{size(d.fragmentation_bytes)} reserved but not allocated (fragmentation); "
            f"inactive split blocks {size(d.inactive_split_bytes)}",
        ),
    ]
    minute = f" ({retries_minute} in the last minute)" if retries_minute else ""
    counts = f"{d.num_alloc_retries}{minute}   OOMs {d.num_ooms}"
    if d.num_device_alloc is not None:
        counts += f"   cudaMalloc {d.num_device_alloc}, cudaFree {d.num_device_free or 0}"
    out.append(_field("retries", counts, WARN if retries_minute or d.num_ooms else TEXT))
    nvml = view.vram
    if not math.isnan(nvml):
        gap = nvml - d.reserved_bytes
        text = f"NVML sees {size(nvml)}, PyTorch reserved {size(d.reserved_bytes)}: " + (
            f"{size(gap)} {GAP_WHERE}" if gap >= 0 else "NVML's figure lags the allocator"
        )
        out.append(_field("gap", text))
    if d.device_free_bytes is not None and d.device_total_bytes:
        out.append(
            _field(
                "device",
                f"{size(d.device_free_bytes)} free of {size(d.device_total_bytes)} "
                "(all processes, as CUDA reports it)",
            )
        )
    return out
