"""Terminal writer: turns a :class:`Grid` into escape sequences, sending only what changed.

The previous frame is kept; each new frame is compared cell by cell and only runs of changed
cells are written (one cursor move per run). A double-width glyph is written from its first cell
and moves the cursor two columns; its continuation cell is never written on its own. A resize,
a theme switch or an explicit ``invalidate()`` forces a full redraw. With ``no_color`` no colour
sequence is ever emitted: emphasis is bold / reverse / underline only (https://no-color.org).
"""

from __future__ import annotations

from typing import Any

from vramtop.render.grid import CONTINUATION, Grid, Style
from vramtop.render.theme import Theme


class TerminalWriter:
    def __init__(self, term: Any, theme: Theme, no_color: bool = False) -> None:
        self.term = term
        self.theme = theme
        self.no_color = no_color
        self._prev: Grid | None = None
        self._seq: dict[Style, str] = {}
        # Cursor moves by cell: the terminal library expands each from its terminfo template in
        # Python (~0.4 ms), and a frame moves to the same few dozen cells every time.
        self._moves: dict[tuple[int, int], str] = {}
        self.bytes_written = 0

    def set_theme(self, theme: Theme) -> None:
        if theme is not self.theme:
            self.theme = theme
            self.invalidate()

    def invalidate(self) -> None:
        self._prev = None
        self._seq.clear()
        self._moves.clear()

    def _style_seq(self, style: Style) -> str:
        seq = self._seq.get(style)
        if seq is None:
            t = self.term
            parts = [t.normal]
            if style.bold:
                parts.append(t.bold)
            if style.dim and not self.no_color:
                parts.append(t.dim)
            if style.underline:
                parts.append(t.underline)
            if style.reverse:
                parts.append(t.reverse)
            if not self.no_color:
                if style.fg:
                    parts.append(t.color_rgb(*self.theme.rgb(style.fg)))
                else:
                    parts.append(t.color_rgb(*self.theme.rgb("text")))
                if style.bg:
                    parts.append(t.on_color_rgb(*self.theme.rgb(style.bg)))
            seq = "".join(parts)
            self._seq[style] = seq
        return seq

    def render(self, grid: Grid) -> str:
        """The escape-sequence string that brings the terminal from the last frame to ``grid``."""
        t = self.term
        prev = self._prev
        full = prev is None or prev.width != grid.width or prev.height != grid.height
        out: list[str] = []
        if full:
            out.append(t.normal + t.home + t.clear)
        current: Style | None = None
        for y in range(grid.height):
            chars = grid.chars[y]
            styles = grid.styles[y]
            if full:
                changed = list(range(grid.width))
            else:
                assert prev is not None
                pc, ps = prev.chars[y], prev.styles[y]
                if chars == pc and styles == ps:
                    continue  # most rows of most frames: compared whole, at C speed
                changed = [x for x in range(grid.width) if chars[x] != pc[x] or styles[x] != ps[x]]
            if not changed:
                continue
            cursor = -1
            for cell in changed:
                x = cell
                ch = chars[x]
                if ch == CONTINUATION:
                    # The right half of a wide glyph: drawn with its left half. When only this
                    # half changed (a restyle), the glyph is drawn again from its left half.
                    x = cell - 1
                    if x < 0 or x < cursor:
                        continue
                    ch = chars[x]
                if x != cursor:
                    move = self._moves.get((x, y))
                    if move is None:
                        move = self._moves[(x, y)] = t.move_xy(x, y)
                    out.append(move)
                style = styles[x]
                if style != current:
                    out.append(self._style_seq(style))
                    current = style
                out.append(ch)
                cursor = x + (2 if x + 1 < grid.width and chars[x + 1] == CONTINUATION else 1)
        if out:
            out.append(t.normal)
        self._prev = _copy(grid)
        text = "".join(out)
        self.bytes_written += len(text.encode("utf-8", "replace"))
        return text


def _copy(grid: Grid) -> Grid:
    g = Grid(grid.width, grid.height)
    g.chars = [row[:] for row in grid.chars]
    g.styles = [row[:] for row in grid.styles]
    return g
