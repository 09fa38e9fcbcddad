"""SVG screenshots of the cell grid: the same cells the terminal shows, in the theme's colours.

Where it sits: ``s`` in the render process -> :func:`grid_to_svg` -> a file under
``resolve_screenshot_dir(display)``. Runs of cells with one style become one ``<text>`` element
(bold, underline kept); cell backgrounds become ``<rect>``s. The output is plain SVG 1.1 that
browsers and XML parsers read; every string is escaped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from vramtop.render.grid import Grid, Style
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


def grid_to_svg(grid: Grid, theme: Theme, title: str = "vramtop") -> str:
    width = round(grid.width * CELL_W)
    height = round(grid.height * CELL_H)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family={quoteattr(FONT)} font-size="14">',
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
            while end < grid.width and styles[end] == style:
                end += 1
            fg, bg = _colours(style, theme)
            if bg is not None:
                out.append(
                    f'<rect x="{x * CELL_W:.1f}" y="{y * CELL_H:.1f}" '
                    f'width="{(end - x) * CELL_W:.1f}" height="{CELL_H:.1f}" fill="{bg}"/>'
                )
            run = "".join(chars[x:end])
            if run.strip():
                attrs = f'fill="{fg}"'
                if style.bold:
                    attrs += ' font-weight="bold"'
                if style.underline:
                    attrs += ' text-decoration="underline"'
                if style.dim:
                    attrs += ' opacity="0.6"'
                texts.append(
                    f'<text x="{x * CELL_W:.1f}" y="{(y + 0.78) * CELL_H:.1f}" {attrs} '
                    f'xml:space="preserve" textLength="{(end - x) * CELL_W:.1f}">'
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
