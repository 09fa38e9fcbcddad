"""A grid of styled cells: what every widget draws into (ratatui's buffer model).

Styles are semantic (``fg="used"``, ``bold=True``); the theme turns them into colours only in the
writer, so a theme switch redraws without touching widgets, and tests can assert on meaning.

Cells are terminal columns, measured with ``wcwidth`` as terminals measure them: a CJK glyph or
an emoji takes two cells, the first holding the glyph and the second a continuation cell (``""``)
that the writer and the SVG export skip. Overwriting either half of a wide glyph blanks the other
half (a terminal does the same), and a wide glyph that would straddle the right edge or the
``limit`` of a ``put`` becomes a space, so the grid never claims a column the terminal would not
use. Combining marks join the cell before them; other zero-width characters (variation selectors,
joiners that escaped :func:`vramtop.sanitize.clean`) and control characters are not drawn at all,
since terminals disagree on how wide they make a glyph.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from wcwidth import wcwidth

CONTINUATION = ""  # the second cell of a double-width glyph
MAX_MARKS = 3  # combining marks kept on one cell: enough for any script, not for "zalgo" text


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


@lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    """Cells the code point ``ch`` takes: 1 or 2; 0 for a combining mark (drawn with the glyph
    before it); -1 for anything that is not drawn (controls, other zero-width characters)."""
    w = wcwidth(ch)
    if w > 0:
        return min(w, 2)
    code = ord(ch)
    if w == 0 and unicodedata.category(ch) in ("Mn", "Me"):
        # Variation selectors change an emoji's width on some terminals and not on others.
        if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:
            return -1
        return 0
    return -1


def text_width(text: str) -> int:
    """Cells ``text`` takes in the grid (and on a terminal)."""
    if text.isascii() and text.isprintable():
        return len(text)
    return sum(max(0, char_width(ch)) for ch in text)


def clip(text: str, width: int) -> str:
    """The longest prefix of ``text`` that fits in ``width`` cells."""
    if text.isascii() and text.isprintable():
        return text[: max(0, width)]
    used = 0
    for i, ch in enumerate(text):
        w = max(0, char_width(ch))
        if used + w > width:
            return text[:i]
        used += w
    return text


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` in exactly ``width`` cells: cut with an ellipsis when too wide, padded with
    spaces (on the left when ``right``) when too narrow."""
    if text_width(text) > width:
        text = clip(text, width - 1) + "…" if width > 1 else clip(text, width)
    pad = " " * max(0, width - text_width(text))
    return pad + text if right else text + pad


def wrap(text: str, width: int) -> list[str]:
    """``text`` cut into lines of at most ``width`` cells (at least one line, maybe empty)."""
    width = max(2, width)
    lines: list[str] = []
    while text:
        head = clip(text, width)
        lines.append(head)
        text = text[len(head) :]
    return lines or [""]


class Grid:
    def __init__(self, width: int, height: int) -> None:
        self.width = max(0, width)
        self.height = max(0, height)
        self.chars: list[list[str]] = [[" "] * self.width for _ in range(self.height)]
        self.styles: list[list[Style]] = [[PLAIN] * self.width for _ in range(self.height)]

    def _release(self, row: list[str], start: int, stop: int) -> None:
        """Cells ``start:stop`` are about to be overwritten: blank the halves of wide glyphs
        that stick out of that range on either side."""
        if 0 < start < self.width and row[start] == CONTINUATION:
            row[start - 1] = " "
        if 0 < stop < self.width and row[stop] == CONTINUATION:
            row[stop] = " "

    def put(self, x: int, y: int, text: str, style: Style = PLAIN, limit: int | None = None) -> int:
        """Write ``text`` at (x, y), clipped to the grid and ``limit`` cells; return cells used."""
        if y < 0 or y >= self.height or x >= self.width:
            return 0
        end = self.width if limit is None else min(self.width, x + max(0, limit))
        row_c = self.chars[y]
        row_s = self.styles[y]
        if text.isascii() and text.isprintable():
            # The common case: one cell per character.
            n = max(0, min(len(text), end - x))
            lo, hi = max(0, x), x + n
            if hi > lo:
                self._release(row_c, lo, hi)
                row_c[lo:hi] = text[lo - x : hi - x]
                row_s[lo:hi] = [style] * (hi - lo)
            return n
        start = x
        last = -1  # the cell a combining mark joins
        for ch in text:
            w = char_width(ch)
            if w < 0:
                continue
            if w == 0:
                if last >= 0 and len(row_c[last]) <= MAX_MARKS:
                    # Composed where Unicode can ("e" + U+0301 is "é"), as terminals store it.
                    row_c[last] = unicodedata.normalize("NFC", row_c[last] + ch)
                continue
            if x >= end:
                break
            if w == 2 and x + 1 >= end:
                ch, w = " ", 1  # half a glyph cannot be drawn: the last cell stays blank
            if x + w <= 0:
                x += w
                last = -1
                continue
            if x < 0:
                ch, w = " ", 1  # the right half of a glyph cut by the left edge
                x = 0
            self._release(row_c, x, x + w)
            row_c[x] = ch
            row_s[x] = style
            if w == 2:
                row_c[x + 1] = CONTINUATION
                row_s[x + 1] = style
            last = x
            x += w
        return x - start

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
        """The screen as plain lines (tests, ``--once``-like dumps); a wide glyph reads once."""
        return ["".join(row) for row in self.chars]

    def line(self, y: int) -> str:
        return "".join(self.chars[y]) if 0 <= y < self.height else ""
