"""Markdown tables and progress lines, shared by ``scripts/bench.py`` and its parts.

Where it sits: outside the data flow, the report side of the benchmark scripts.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A markdown table, its first ``left`` columns (labels) left-aligned, the rest (figures)
    right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(
        "-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([line(headers), rule + "|", *(line(r) for r in rows)])


def dict_table(rows: Sequence[dict[str, object]]) -> str:
    if not rows:
        return "(no rows)"
    headers = list(rows[0])

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    return markdown_table(headers, [[cell(r.get(h, "")) for h in headers] for r in rows])


@contextlib.contextmanager
def progress(text: str) -> Iterator[None]:
    """``  text ... 1.2 s`` on stderr around a step."""
    print(f"  {text} ...", end="", file=sys.stderr, flush=True)
    started = time.monotonic()
    yield
    print(f" {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
