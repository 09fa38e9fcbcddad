"""Wide and invisible characters: CJK, emoji, combining marks, bidi overrides, zero-width.

The grid measures cells as a terminal does (wcwidth); the diff writer's output, fed to a terminal
emulator (pyte, which measures with the same wcwidth), must give exactly the grid's text after
every frame, or a real terminal would be left with shifted rows and stale cells. End to end: a
real child process whose command line holds CJK, emoji, combining marks and a bidi override,
shown by ``vramtop --demo`` in a pseudo-terminal, lines up with the rest of the table.
"""

from __future__ import annotations

import io
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import blessed
import pyte
from hypothesis import given, settings
from hypothesis import strategies as st
from tui import Tui
from wcwidth import wcwidth

from vramtop.render.grid import CONTINUATION, Grid, Style, clip, fit, text_width, wrap
from vramtop.render.svg import CELL_W, grid_to_svg
from vramtop.render.theme import THEMES
from vramtop.render.writer import TerminalWriter
from vramtop.sanitize import MAX_LEN, clean

RLO, PDF, ZWSP, ZWJ = "\u202e", "\u202c", "\u200b", "\u200d"


class Emulator:
    """The diff writer driving a terminal emulator of the grid's size."""

    def __init__(self, width: int, height: int) -> None:
        term = blessed.Terminal(kind="xterm-256color", stream=io.StringIO(), force_styling=True)
        self.writer = TerminalWriter(term, THEMES["dark"])
        self.screen = pyte.Screen(width, height)
        self.stream = pyte.Stream(self.screen)

    def show(self, grid: Grid) -> list[str]:
        self.stream.feed(self.writer.render(grid))
        return [unicodedata.normalize("NFC", line) for line in self.screen.display]


def nfc(lines: list[str]) -> list[str]:
    return [unicodedata.normalize("NFC", line) for line in lines]


def test_wide_glyph_takes_two_cells_and_the_rest_of_the_row_keeps_its_columns() -> None:
    grid = Grid(20, 1)
    used = grid.put(0, 0, "a训练🚀b")
    assert used == 8
    assert grid.chars[0][:9] == ["a", "训", CONTINUATION, "练", CONTINUATION, "🚀", "", "b", " "]
    assert grid.line(0) == "a训练🚀b" + " " * 12
    assert text_width(grid.line(0)) == 20


def test_overwriting_either_half_of_a_wide_glyph_blanks_the_other_half() -> None:
    grid = Grid(6, 2)
    grid.put(0, 0, "x训y")
    grid.put(1, 0, "a")  # the left half
    assert grid.chars[0][:4] == ["x", "a", " ", "y"]
    grid.put(0, 1, "x训y")
    grid.put(2, 1, "b")  # the right half
    assert grid.chars[1][:4] == ["x", " ", "b", "y"]
    grid.put(1, 1, "训")
    grid.put(2, 1, "练")  # a wide glyph over the right half of another
    assert grid.chars[1][:5] == ["x", " ", "练", CONTINUATION, " "]


def test_a_wide_glyph_that_would_straddle_the_edge_or_the_limit_becomes_a_space() -> None:
    grid = Grid(5, 2)
    assert grid.put(2, 0, "ab训") == 3
    assert grid.chars[0] == [" ", " ", "a", "b", " "]
    grid.put(0, 1, "训练模", limit=3)
    assert grid.chars[1] == ["训", CONTINUATION, " ", " ", " "]
    grid.put(-1, 1, "训a")  # cut by the left edge: its right half is blank
    assert grid.chars[1][:2] == [" ", "a"]


def test_combining_marks_join_their_glyph_and_invisible_characters_take_no_cell() -> None:
    grid = Grid(12, 1)
    grid.put(0, 0, "cafe\u0301|x\u0301|\u2764\ufe0f|\x07\x1b|")
    assert grid.chars[0][:10] == ["c", "a", "f", "\u00e9", "|", "x\u0301", "|", "\u2764", "|", "|"]
    assert text_width("e\u0301") == 1 and text_width("\u2764\ufe0f") == 1


def test_cell_helpers_measure_clip_pad_and_wrap_in_cells() -> None:
    assert text_width("训练 ok") == 7
    assert clip("训练模型", 5) == "训练"
    assert fit("训练模型.py", 8) == "训练模… "  # 7 cells and one of padding
    assert fit("用户", 6, right=True) == "  用户" and text_width(fit("用户", 6)) == 6
    assert wrap("训练模型abc", 5) == ["训练", "模型a", "bc"]
    assert all(text_width(line) <= 5 for line in wrap("🚀" * 9 + "x", 5))


def test_diff_writer_leaves_no_stale_cell_after_wide_titles_change() -> None:
    emu = Emulator(40, 4)
    frames = [
        ["python train.py --lr 3e-4", "abcdefghij" * 4, "", "end"],
        [
            "python /数据/训练模型.py 🚀 go",
            "abc训练def",
            "🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀",
            "x",
        ],
        ["python train.py --lr 3e-4", "ab训练cdef", "🚀 🚀 🚀 🚀 cafe\u0301 done", "end"],
        ["python 模型 🚀 finetune", "abcdefghij" * 4, "", "训练"],
    ]
    for lines in frames:
        grid = Grid(40, 4)
        for y, text in enumerate(lines):
            grid.put(0, y, text)
        assert emu.show(grid) == nfc(grid.text())


def test_diff_writer_redraws_a_wide_glyph_restyled_on_its_right_half_only() -> None:
    emu = Emulator(10, 1)
    grid = Grid(10, 1)
    grid.put(0, 0, "a训b")
    emu.show(grid)
    grid.style_row(0, Style(reverse=True), x=2, w=1)  # only the continuation cell
    out = emu.writer.render(grid)
    assert "训" in out and "b" not in out
    emu.stream.feed(out)
    assert emu.screen.display[0].startswith("a训b")


# Only combining marks that compose: pyte wraps a pending line before it sees that a mark takes
# no cell, so a lone mark in the bottom-right corner would scroll its screen (terminals do not).
PIECES = st.sampled_from(
    ["a", "b", " ", "-", "训", "练", "模", "🚀", "火", "e\u0301", "\u2764\ufe0f", "x" * 5]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(
                st.integers(-2, 13), st.integers(0, 2), st.lists(PIECES, max_size=6).map("".join)
            ),
            max_size=6,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_terminal_matches_the_grid_after_any_sequence_of_frames(
    frames: list[list[tuple[int, int, str]]],
) -> None:
    emu = Emulator(12, 3)
    for puts in frames:
        grid = Grid(12, 3)
        for x, y, text in puts:
            grid.put(x, y, text)
        assert emu.show(grid) == nfc(grid.text())
        assert all(sum(max(0, wcwidth(c)) for c in line) == 12 for line in grid.text())


def test_svg_puts_each_glyph_after_a_wide_one_in_its_terminal_column() -> None:
    grid = Grid(20, 1)
    grid.put(0, 0, "ab训练cd🚀e")
    root = ET.fromstring(grid_to_svg(grid, THEMES["dark"]))
    texts = [
        (el.text, float(el.get("x", "0")), float(el.get("textLength", "0")))
        for el in root.iter("{http://www.w3.org/2000/svg}text")
    ]
    cell = lambda n: round(n * CELL_W, 1)  # noqa: E731
    assert texts == [
        ("ab", cell(0), cell(2)),
        ("训", cell(2), cell(2)),
        ("练", cell(4), cell(2)),
        ("cd", cell(6), cell(2)),
        ("🚀", cell(8), cell(2)),
        ("e" + " " * 9, cell(10), cell(10)),
    ]


def test_clean_strips_bidi_overrides_and_zero_width_characters() -> None:
    trojan = f"python run.py {RLO}txt.exe{PDF} \u2066iso\u2069 a{ZWSP}b{ZWJ}c\u2060d\ufeffe"
    assert clean(trojan) == "python run.py txt.exe iso abcde"
    assert clean("👩" + ZWJ + "💻") == "👩💻"  # two emoji, two cells each, on every terminal


def test_clean_drops_trailing_padding_and_undecodable_bytes() -> None:
    assert clean("vramtop: sampler" + "\0" * 40 + "   ") == "vramtop: sampler"
    undecodable = b"train-\xff\xfe.py".decode("utf-8", "surrogateescape")
    out = clean(undecodable)
    assert out == "train-\ufffd\ufffd.py"
    out.encode("utf-8")  # writable to any UTF-8 terminal
    assert len(clean("训" * 1000 + RLO * 1000)) == MAX_LEN


WIDE_SCENARIO = """
name = "wide"
description = "a CJK/emoji/bidi command line that arrives at the top, then moves down a row"
seed = 1

[[gpu]]
name = "NVIDIA L4"
memory_mib = 23034

[[process]]
name = "steady"
gpu = 0
argv = ["python", "steady.py", "--a", "long", "ascii", "command", "line"]
memory = { curve = "constant", mib = 2000 }

[[process]]
name = "leaver"
gpu = 0
argv = ["python", "leaver.py", "--goes-away"]
stop = 3.0
memory = { curve = "constant", mib = 3000 }

[[process]]
name = "wide"
gpu = 0
start = 1.5
argv = [
    "python", "/数据/训练模型.py", "--tag=🚀火箭", "cafe\u0301",
    "\u202eevil\u202c", "👩\u200d💻", "end",
]
memory = { curve = "constant", mib = 4000 }

[[process]]
name = "big"
gpu = 0
start = 3.0
argv = ["python", "big.py"]
memory = { curve = "constant", mib = 6000 }
"""

WIDE_SHOWN = "python /数据/训练模型.py --tag=🚀火箭 café evil 👩💻 end"


def test_tui_lines_up_a_cjk_emoji_bidi_command_line(tmp_path: Path) -> None:
    (tmp_path / ".config").mkdir()
    scenario = tmp_path / "wide.toml"
    scenario.write_text(WIDE_SCENARIO, encoding="utf-8")
    cols, rows = 180, 30
    tui = Tui(
        ["--demo", str(scenario), "--refresh-rate", "0.5"], cols=cols, rows=rows, home=tmp_path
    )

    def settled(screen: str) -> bool:
        # The wide process arrived at the top (over the leaver's row), then "big" arrived above
        # it as the leaver left: the short ASCII row was drawn over the wide one by the diff
        # writer, which rewrites only the cells it believes changed.
        return "big.py" in screen and "leaver.py" not in screen and "steady.py" in screen

    def cells(needle: str) -> list[str]:
        """The cells of the first row showing ``needle`` (a wide glyph's second cell is "")."""
        for y in range(rows):
            if needle in tui.screen.display[y]:
                return [tui.screen.buffer[y][x].data for x in range(cols)]
        return []

    def command(row: list[str], x: int) -> str:
        return unicodedata.normalize("NFC", "".join(row[x:])).rstrip()

    try:
        tui.wait_for(settled, timeout=20)
        cmd_x = "".join(cells(" COMMAND")).index("COMMAND")
        end_x = cmd_x + text_width(WIDE_SHOWN)

        def lined_up(_: str) -> bool:
            wide, steady, big = cells("训练"), cells("steady.py"), cells("big.py")
            return (
                bool(wide and steady and big)
                and command(big, cmd_x) == "python big.py"
                and command(steady, cmd_x) == "python steady.py --a long ascii command line"
                and command(wide, cmd_x) == WIDE_SHOWN
                # each glyph in the column the grid gave it, blanks after the last one
                and wide[end_x - 3 : end_x] == ["e", "n", "d"]
                and set(wide[end_x:]) == {" "}
            )

        tui.wait_for(lined_up, timeout=5)
        screen = "".join(c.data for row in tui.screen.buffer.values() for c in row.values())
        assert not set(screen) & {RLO, PDF, ZWJ, ZWSP, "\x1b"}, "nothing invisible is drawn"
    finally:
        tui.close()
