"""GPU cards (full and compact layouts) and one-line GPU summaries (mini layout).

Where it sits: ``screen.py`` calls these with the newest :class:`GpuSample`, the analyzer's
:class:`GpuAnalysis` (OOM alert, temperature warning) and the shm history (sparkline). A card is
a title line with the live figures, a memory bar split used / reserved / free, and, when the
analyzer predicts one, an OOM alert line.
"""

from __future__ import annotations

from vramtop.analysis.model import GpuAnalysis
from vramtop.config import Config
from vramtop.fmt import pct, size, temp, watts
from vramtop.gpu.snapshot import GpuSample
from vramtop.na import NaType
from vramtop.render.grid import Grid, Style
from vramtop.render.history import History
from vramtop.render.widgets import MUTED, duration, memory_bar, put_runs, rate, sparkline

TITLE = Style(fg="header", bold=True)
ACCENT = Style(fg="accent", bold=True)
CRIT = Style(fg="crit", bold=True)
SPARK_W = 32


def _mhz(value: int | NaType) -> str:
    return "N/A" if isinstance(value, NaType) else f"{value}MHz"


def oom_alert(gpu: GpuSample, analysis: GpuAnalysis | None, config: Config) -> str:
    """The alert line's text, or "" when the prediction does not pass the live thresholds."""
    if analysis is None or analysis.oom is None:
        return ""
    oom = analysis.oom
    alerts = config.alerts
    if oom.eta_s > alerts.oom_warning_seconds or oom.confidence < alerts.oom_min_confidence:
        return ""
    text = (
        f"OOM WARNING {gpu.label}: out of memory in ~{duration(oom.eta_s)} "
        f"({duration(oom.eta_low_s)}-{duration(oom.eta_high_s)}, "
        f"confidence {oom.confidence:.0%})"
    )
    if oom.driver is not None:
        text += f", driven by PID {oom.driver.pid}"
    if analysis.trend.rate_mib_s:
        text += f" at {rate(analysis.trend.rate_mib_s)}"
    return text


def gpu_card(
    grid: Grid,
    y: int,
    gpu: GpuSample,
    analysis: GpuAnalysis | None,
    config: Config,
    history: History,
    *,
    full: bool,
    accessible: bool,
) -> int:
    """Draw one card from line ``y``; return the first line after it."""
    w = grid.width
    # A MIG instance is drawn as a sub-card under its GPU.
    name = f" {'└ ' if gpu.parent_index is not None else ''}{gpu.label}  {gpu.name}"
    grid.put(0, y, name, TITLE)
    if gpu.lost:
        x = len(name) + 2
        x += grid.put(x, y, "LOST", Style(fg="crit", bold=True, reverse=True)) + 2
        grid.put(x, y, gpu.note or "the driver lost this GPU; retrying", Style(fg="crit"))
        return y + 2
    warn_c = config.alerts.temp_warning_celsius
    hot = (analysis is not None and analysis.temp_warning) or (
        not isinstance(gpu.temperature_c, NaType) and gpu.temperature_c >= warn_c
    )
    temp_text = temp(gpu.temperature_c) + (" HOT" if hot else "")
    stats: list[tuple[str, str, Style]] = [
        ("util ", pct(gpu.util_gpu), Style()),
        ("mem-bw ", pct(gpu.util_memory), Style()),
        ("temp ", temp_text, CRIT if hot else Style()),
        ("power ", f"{watts(gpu.power_w)}/{watts(gpu.power_limit_w)}", Style()),
    ]
    if full:
        stats.append(("fan ", pct(gpu.fan_percent), Style()))
        stats.append(("sm ", _mhz(gpu.clock_sm_mhz), Style()))
        stats.append(("mem ", _mhz(gpu.clock_mem_mhz), Style()))
        if not isinstance(gpu.pstate, NaType):
            stats.append(("", f"P{gpu.pstate}", Style()))
    if gpu.parent_index is not None:
        stats = []  # a MIG instance shares its GPU's utilisation, temperature and power
    x = max(len(name) + 3, 34)
    for label, value, style in stats:
        if x + len(label) + len(value) >= w - 1:
            break
        x += grid.put(x, y, label, MUTED)
        x += grid.put(x, y, value, style if style != Style() else Style(fg="text"))
        x += grid.put(x, y, "  ")
    y += 1
    used, total, reserved = gpu.memory_used, gpu.memory_total, gpu.memory_reserved
    free = gpu.memory_free
    tail = f" {size(used)} used  {size(reserved)} reserved  {size(free)} free  {size(total)} total"
    if gpu.memory_source == "host":
        tail += " (host memory)"  # unified memory: the driver reports none of its own
    spark_w = SPARK_W if full and w >= 120 else 0
    bar_w = max(10, w - len(tail) - 8 - (spark_w + 7 if spark_w else 0))
    x = grid.put(1, y, "mem [", MUTED) + 1
    x = put_runs(grid, x, y, memory_bar(gpu, bar_w, accessible))
    x += grid.put(x, y, "]", MUTED)
    x += grid.put(x, y, tail)
    if spark_w:
        top = float(total) if not isinstance(total, NaType) else 0.0
        values = history.gpu_used(gpu.index, spark_w)
        line = sparkline(values, spark_w, accessible, top=top) if values else ""
        x += grid.put(x, y, "  hist ", MUTED)
        if line:
            grid.put(x, y, line, Style(fg="used"))
        else:
            grid.put(x, y, "collecting…" if not accessible else "collecting...", MUTED)
    y += 1
    if gpu.processes_note:
        grid.put(1, y, gpu.processes_note, Style(fg="warn"))
        y += 1
    if gpu.slow_calls and full:
        slow = ", ".join(f"{api} {ms:.0f} ms" for api, ms in gpu.slow_calls[:3])
        grid.put(1, y, f"slow NVML calls: {slow}", Style(fg="warn"))
        y += 1
    alert = oom_alert(gpu, analysis, config)
    if alert:
        prefix = "" if accessible else "⚠ "
        grid.put(1, y, prefix + alert, CRIT)
        y += 1
    return y


def gpu_line_mini(grid: Grid, y: int, gpu: GpuSample, alert: str, accessible: bool) -> None:
    if gpu.lost:
        grid.put(0, y, f"{gpu.index} LOST {gpu.name}", CRIT)
        return
    x = grid.put(0, y, f"{gpu.index} ", ACCENT)
    # Fixed widths, so every GPU's bar is as long as the others'; "util" says what the % is.
    tail = f" {size(gpu.memory_used):>5}/{size(gpu.memory_total):<5} util {pct(gpu.util_gpu):>4}"
    bar_w = max(4, grid.width - x - len(tail) - len(" OOM!") - 2)
    if alert:
        tail += " OOM!"
    x += grid.put(x, y, "[", MUTED)
    x = put_runs(grid, x, y, memory_bar(gpu, bar_w, accessible))
    x += grid.put(x, y, "]", MUTED)
    grid.put(x, y, tail, CRIT if alert else Style())
