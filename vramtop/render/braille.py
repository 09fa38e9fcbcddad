"""A dot canvas for charts: 2x4 dots per cell as braille glyphs, or ASCII shading when accessible.

Where it sits: ``timeline.py`` and ``procchart.py`` paint areas, bands and lines into a
:class:`Canvas` in dot coordinates (x grows right, y grows *up* from the bottom), then
:meth:`Canvas.blit` copies it into the :class:`~vramtop.render.grid.Grid`. Each cell takes the
style of the last layer that put a dot in it, so drawing order is the priority (areas first,
projection last). In accessible mode a cell shows its layer's ASCII mark instead of dots, so no
meaning rests on a glyph or a colour alone.
"""

from __future__ import annotations

from vramtop.render.grid import Grid, Style

BRAILLE_BASE = 0x2800
# Dot bits by (column in the cell, row from the cell's top).
_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
# Bits of a column filled k dots up from the cell's bottom (k = 0..4).
_FILL = tuple(tuple(sum(_BITS[col][3 - i] for i in range(k)) for k in range(5)) for col in range(2))


class Canvas:
    """``width`` x ``height`` cells = ``2 * width`` x ``4 * height`` dots."""

    def __init__(self, width: int, height: int) -> None:
        self.width = max(0, width)
        self.height = max(0, height)
        self.dots_w = 2 * self.width
        self.dots_h = 4 * self.height
        self.bits = [[0] * self.width for _ in range(self.height)]
        self.styles: list[list[Style | None]] = [[None] * self.width for _ in range(self.height)]
        self.marks: list[list[str]] = [[" "] * self.width for _ in range(self.height)]

    def _touch(self, cx: int, cy: int, bits: int, style: Style, mark: str) -> None:
        self.bits[cy][cx] |= bits
        self.styles[cy][cx] = style
        self.marks[cy][cx] = mark

    def area(
        self, tops: list[float], style: Style, mark: str, bases: list[float] | None = None
    ) -> None:
        """Fill each dot column from ``bases[x]`` (default 0) up to ``tops[x]`` (in dots; NaN or
        a top at or below the base leaves the column empty)."""
        # The hot loop of every frame with a chart: cells are written directly, not via _touch.
        h, dots_h = self.height, self.dots_h
        all_bits, all_styles, all_marks = self.bits, self.styles, self.marks
        for x, top in enumerate(tops[: self.dots_w]):
            base = bases[x] if bases is not None else 0.0
            if top != top or base != base:  # NaN
                continue
            lo = max(0, round(base))
            hi = min(dots_h, round(top))
            if hi <= lo:
                continue
            cx, col = divmod(x, 2)
            fill = _FILL[col]
            for cell_row in range(lo // 4, (hi - 1) // 4 + 1):
                bottom = cell_row * 4  # dots below this cell
                k_hi = hi - bottom
                k_lo = lo - bottom
                bits = fill[4 if k_hi > 4 else k_hi] & ~fill[0 if k_lo < 0 else k_lo]
                if bits:
                    cy = h - 1 - cell_row
                    all_bits[cy][cx] |= bits
                    all_styles[cy][cx] = style
                    all_marks[cy][cx] = mark

    def dot(self, x: int, y: int, style: Style, mark: str) -> None:
        if 0 <= x < self.dots_w and 0 <= y < self.dots_h:
            cx, col = divmod(x, 2)
            cell_row, row_in = divmod(y, 4)
            self._touch(cx, self.height - 1 - cell_row, _BITS[col][3 - row_in], style, mark)

    def line(
        self, x0: float, y0: float, x1: float, y1: float, style: Style, mark: str, step: int = 1
    ) -> None:
        """A straight line in dots; ``step`` > 1 draws every step-th dot (a dotted line)."""
        n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
        for i in range(0, n, max(1, step)):
            t = i / (n - 1) if n > 1 else 0.0
            self.dot(round(x0 + (x1 - x0) * t), round(y0 + (y1 - y0) * t), style, mark)

    def cell(self, cx: int, cy: int, accessible: bool) -> tuple[str, Style | None]:
        style = self.styles[cy][cx]
        if style is None:
            return " ", None
        if accessible:
            mark = self.marks[cy][cx]
            # A partly filled area cell reads lighter than a full one.
            if mark == "#" and self.bits[cy][cx] != 0xFF:
                mark = ":"
            return mark, style
        return chr(BRAILLE_BASE + self.bits[cy][cx]), style

    def blit(self, grid: Grid, x: int, y: int, accessible: bool, base: Style) -> None:
        """Copy into ``grid`` at (x, y); empty cells get ``base`` (the chart's background)."""
        first = max(0, -x)
        last = min(self.width, grid.width - x)
        for cy in range(max(0, -y), min(self.height, grid.height - y)):
            row_c, row_s = grid.chars[y + cy], grid.styles[y + cy]
            bits, styles, marks = self.bits[cy], self.styles[cy], self.marks[cy]
            for cx in range(first, last):
                style = styles[cx]
                if style is None:
                    row_c[x + cx], row_s[x + cx] = " ", base
                    continue
                if accessible:
                    mark = marks[cx]
                    row_c[x + cx] = ":" if mark == "#" and bits[cx] != 0xFF else mark
                else:
                    row_c[x + cx] = chr(BRAILLE_BASE + bits[cx])
                row_s[x + cx] = style
