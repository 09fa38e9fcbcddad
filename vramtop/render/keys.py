"""Every key vramtop answers to, in one table: the dispatcher and the help overlay both read it,
so the help can never miss a key.

Where it sits: blessed keystrokes -> :func:`token` (a key name such as ``KEY_UP`` or the typed
character) -> :func:`action_for` -> ``controller.py`` performs the action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Binding:
    keys: tuple[str, ...]  # tokens: blessed key names or single characters
    label: str  # how the help shows the keys
    action: str
    help: str


BINDINGS: tuple[Binding, ...] = (
    Binding(("KEY_UP",), "Up / Down", "up", "move the selection (one selection across all GPUs)"),
    Binding(("KEY_DOWN",), "", "down", ""),
    Binding(("KEY_PGUP",), "PgUp / PgDn", "page_up", "move the selection a page"),
    Binding(("KEY_PGDOWN",), "", "page_down", ""),
    Binding(("KEY_HOME",), "Home / End", "home", "first / last process"),
    Binding(("KEY_END",), "", "end", ""),
    Binding(("d", "KEY_ENTER"), "d / Enter", "detail", "detail panel of the selected process"),
    Binding(("k", "KEY_F9"), "k / F9", "kill", "kill the selected process (SIGTERM, then SIGKILL)"),
    Binding(("/",), "/", "filter", "filter processes by text (PID, user, command, framework)"),
    Binding(("<", ","), "< / >", "sort_prev", "sort by the previous / next column"),
    Binding((">", "."), "", "sort_next", ""),
    Binding(("r", "I"), "r / I", "sort_reverse", "reverse the sort order"),
    Binding(("T", "KEY_F5"), "T / F5", "tree", "tree view: GPU processes under their parents"),
    Binding(("t",), "t", "theme", "next colour theme"),
    Binding(("L",), "L", "layout", "next layout (auto, full, compact, mini)"),
    Binding(("KEY_TAB", "\t"), "Tab", "chart_mode", "timeline: GPU total / stacked by process"),
    Binding(("s",), "s", "screenshot", "save an SVG screenshot"),
    Binding(("?", "h", "KEY_F1"), "? / h / F1", "help", "this help"),
    Binding(("KEY_ESCAPE",), "Esc", "escape", "close what is open; clear the filter"),
    Binding(("q", "Q", "KEY_F10"), "q / F10", "quit", "quit (Ctrl-C too)"),
)

_BY_TOKEN = {key: b.action for b in BINDINGS for key in b.keys}


def token(key: Any) -> str:
    """A blessed keystroke as one token: its name (``KEY_UP``) or the character typed."""
    name = getattr(key, "name", None)
    if name:
        return str(name)
    return str(key)


def action_for(tok: str) -> str | None:
    return _BY_TOKEN.get(tok)


def help_lines() -> list[tuple[str, str]]:
    """(keys, what they do) for the help overlay, in table order."""
    rows = [(b.label, b.help) for b in BINDINGS if b.label]
    rows.append(("mouse", "click selects a row, the wheel scrolls"))
    return rows
