"""Human formatting shared by ``--once`` and the terminal UI. NA always formats as ``N/A``."""

from __future__ import annotations

from vramtop.na import NaType

GiB = 1024**3
MiB = 1024**2


def size(value: int | float | NaType) -> str:
    """Bytes in the unit a person reads fastest: ``812M``, ``12.3G``."""
    if isinstance(value, NaType):
        return "N/A"
    v = float(value)
    if v >= 100 * GiB:
        return f"{v / GiB:.0f}G"
    if v >= GiB:
        return f"{v / GiB:.1f}G"
    if v >= MiB:
        return f"{v / MiB:.0f}M"
    if v > 0:
        return f"{v / 1024:.0f}K"
    return "0"


def pct(value: int | float | NaType) -> str:
    return "N/A" if isinstance(value, NaType) else f"{value:.0f}%"


def temp(value: int | float | NaType) -> str:
    return "N/A" if isinstance(value, NaType) else f"{value:.0f}°C"


def watts(value: int | float | NaType) -> str:
    return "N/A" if isinstance(value, NaType) else f"{value:.0f}W"
