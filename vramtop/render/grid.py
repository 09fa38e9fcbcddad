"""A grid of styled cells: what every widget draws into (ratatui's buffer model).

Styles are semantic (``fg="used"``, ``bold=True``); the theme turns them into colours only in the
writer, so a theme switch redraws without touching widgets, and tests can assert on meaning.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Style:
    fg: str = ""  # semantic colour name from the theme, "" = the theme's default text
    bg: str = ""  # "" = the theme's background
    bold: bool = False
    reverse: bool = False
    underline: bool = False
    dim: bool = False

    def but(self, **changes: object) -> Style:
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return Style(**values)  # type: ignore[arg-type]


PLAIN = Style()


class Grid:
    def __init__(self, width: int, height: int) -> None:
        self.width = max(0, width)
        self.height = max(0, height)
        self.chars: list[list[str]] = [[" "] * self.width for _ in range(self.height)]
        self.styles: list[list[Style]] = [[PLAIN] * self.width for _ in range(self.height)]

    def put(self, x: int, y: int, text: str, style: Style = PLAIN, limit: int | None = None) -> int:
        """Write ``text`` at (x, y), clipped to the grid and ``limit`` cells; return cells used."""
        if y < 0 or y >= self.height or x >= self.width:
            return 0
        end = self.width if limit is None else min(self.width, x + max(0, limit))
        row_c = self.chars[y]
        row_s = self.styles[y]
        n = 0
        for ch in text:
            if x >= end:
                break
            if x >= 0:
                row_c[x] = ch
                row_s[x] = style
            x += 1
            n += 1
        return n

    def fill(self, x: int, y: int, w: int, h: int, style: Style = PLAIN, ch: str = " ") -> None:
        for yy in range(max(0, y), min(self.height, y + h)):
            self.put(x, yy, ch * w, style)

    def style_row(self, y: int, style: Style, x: int = 0, w: int | None = None) -> None:
        """Restyle cells without changing their text (selection highlight)."""
        if 0 <= y < self.height:
            stop = self.width if w is None else min(self.width, x + w)
            row = self.styles[y]
            for xx in range(max(0, x), stop):
                row[xx] = style

    def text(self) -> list[str]:
        """The screen as plain lines (tests, ``--once``-like dumps)."""
        return ["".join(row) for row in self.chars]

    def line(self, y: int) -> str:
        return "".join(self.chars[y]) if 0 <= y < self.height else ""
