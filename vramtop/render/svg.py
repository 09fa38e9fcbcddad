"""SVG screenshots of the cell grid: the same cells the terminal shows, in the theme's colours.

Where it sits: ``s`` in the render process -> :func:`grid_to_svg` -> a file under
``resolve_screenshot_dir(display)``. Runs of cells with one style become one ``<text>`` element
(bold, underline kept), each stretched over exactly its cells; a double-width glyph (CJK, emoji)
is its own ``<text>`` two cells wide, so what follows it stays in its column. Cell backgrounds
become ``<rect>``s. The output is plain SVG 1.1 that
browsers and XML parsers read; every string is escaped.
"""

from __future__ import annotations

import os
import time
from html import escape
from pathlib import Path

from vramtop.render.grid import CONTINUATION, Grid, Style
from vramtop.render.theme import Theme

CELL_W, CELL_H = 8.4, 17.0
FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"


def _hex(theme: Theme, name: str) -> str:
    r, g, b = theme.rgb(name)
    return f"#{r:02x}{g:02x}{b:02x}"


def _colours(style: Style, theme: Theme) -> tuple[str, str | None]:
    fg = _hex(theme, style.fg or "text")
    bg = _hex(theme, style.bg) if style.bg else None
    if style.reverse:
        fg, bg = (bg or _hex(theme, "background")), fg
    return fg, bg


def _pieces(chars: list[str], x: int, end: int) -> list[tuple[int, int]]:
    """Cells ``x:end`` cut into runs of single-width cells and lone double-width glyphs (the
    glyph's cell and its continuation cell)."""
    out: list[tuple[int, int]] = []
    start = x
    while x < end:
        if x + 1 < len(chars) and chars[x + 1] == CONTINUATION:
            if start < x:
                out.append((start, x))
            out.append((x, x + 2))
            x += 2
            start = x
        else:
            x += 1
    if start < end:
        out.append((start, end))
    return out


def grid_to_svg(grid: Grid, theme: Theme, title: str = "vramtop") -> str:
    width = round(grid.width * CELL_W)
    height = round(grid.height * CELL_H)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{escape(FONT)}" font-size="14">',
        f"<title>{escape(title)}</title>",
        f'<rect width="100%" height="100%" fill="{_hex(theme, "background")}"/>',
    ]
    texts: list[str] = []
    for y in range(grid.height):
        chars, styles = grid.chars[y], grid.styles[y]
        x = 0
        while x < grid.width:
            style = styles[x]
            end = x + 1
            while end < grid.width and (styles[end] == style or chars[end] == CONTINUATION):
                end += 1
            fg, bg = _colours(style, theme)
            if bg is not None:
                out.append(
                    f'<rect x="{x * CELL_W:.1f}" y="{y * CELL_H:.1f}" '
                    f'width="{(end - x) * CELL_W:.1f}" height="{CELL_H:.1f}" fill="{bg}"/>'
                )
            attrs = f'fill="{fg}"'
            if style.bold:
                attrs += ' font-weight="bold"'
            if style.underline:
                attrs += ' text-decoration="underline"'
            if style.dim:
                attrs += ' opacity="0.6"'
            for start, stop in _pieces(chars, x, end):
                run = "".join(chars[start:stop])
                if not run.strip():
                    continue
                # Each piece is stretched over exactly its cells, so a glyph after a wide one
                # lands in the column the terminal shows it in, whatever the font's widths.
                wide = stop - start == 2 and chars[start + 1] == CONTINUATION
                fit = ' lengthAdjust="spacingAndGlyphs"' if wide else ""
                texts.append(
                    f'<text x="{start * CELL_W:.1f}" y="{(y + 0.78) * CELL_H:.1f}" {attrs} '
                    f'xml:space="preserve" textLength="{(stop - start) * CELL_W:.1f}"{fit}>'
                    f"{escape(run)}</text>"
                )
            x = end
    out.extend(texts)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def save_screenshot(grid: Grid, theme: Theme, directory: Path) -> Path:
    """Write the grid as ``vramtop-YYYYmmdd-HHMMSS[-N].svg`` in ``directory``; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = directory / f"vramtop-{stamp}.svg"
    n = 1
    while path.exists():
        n += 1
        path = directory / f"vramtop-{stamp}-{n}.svg"
    tmp = path.with_suffix(".svg.tmp")
    tmp.write_text(grid_to_svg(grid, theme, f"vramtop {stamp}"), encoding="utf-8")
    os.replace(tmp, path)
    return path
