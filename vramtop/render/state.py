"""Everything the render process remembers between frames, and the identity-keyed selection.

Where it sits: ``controller.py`` changes a :class:`ViewState` on messages and keys; ``screen.py``
draws it. The selection is a process identity (pid, start time, GPU), never a row number: it
stays on its process while the table re-sorts, and when the process exits it moves to the row
that took its place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vramtop.config import Config
from vramtop.enrich.users import OtherUsers
from vramtop.messages import ActorState, SampleMessage
from vramtop.render.filters import ProcessFilter
from vramtop.render.model import Knowledge, ProcView, RowKey, TableItem


@dataclass
class KillDialog:
    """What the kill dialog shows; ``controller.py`` fills it from ``vramtop.kill``."""

    pid: int
    user: str
    command: str
    vram: str
    age: str
    refusal: str = ""  # non-empty: the kill is refused and only "close" is offered
    risk: str = ""  # non-empty: not the user's own job; a second confirmation names this
    risk_asked: bool = False  # the first "y" was given: now "Y" (shift) kills, nothing else
    phase: str = "confirm"  # confirm | terminating | killed | exited | refused | failed
    message: str = ""
    seconds_left: float = 0.0

    @property
    def finished(self) -> bool:
        return self.phase in ("killed", "exited", "refused", "failed") or bool(self.refusal)


@dataclass
class ViewState:
    sample: SampleMessage | None = None
    health: tuple[ActorState, ...] = ()
    config: Config = field(default_factory=Config)
    knowledge: Knowledge = field(default_factory=Knowledge)
    filters: ProcessFilter = field(default_factory=ProcessFilter)
    theme: str = "dark"
    layout: str = "auto"
    accessible: bool = False
    no_color: bool = False
    # selection and table
    selected: RowKey | None = None
    last_index: int = 0  # where the selection was, so it moves to a neighbour when it exits
    offset: int = 0
    sort: str = "VRAM"
    descending: bool = True
    tree: bool = False
    filter_text: str = ""
    filter_editing: bool = False
    views: list[ProcView] = field(default_factory=list)  # selectable rows, display order
    # Hidden other users' processes per GPU (show_other_users = false): still accounted for.
    others: dict[int, OtherUsers] = field(default_factory=dict)
    items: list[TableItem] = field(default_factory=list)  # what the table lists (tree: + groups)
    row_at: dict[int, RowKey] = field(default_factory=dict)  # screen line -> row (mouse)
    page: int = 10  # rows the table showed last frame (PgUp/PgDn)
    sortable: list[str] = field(default_factory=list)  # columns the table showed last frame
    # overlays: "", "detail", "help", "kill"
    overlay: str = ""
    kill: KillDialog | None = None
    # status line
    status: str = ""
    status_style: str = "accent"
    status_until: float = 0.0
    # Actors' standing lines (a paused recording...): key -> (text, theme colour).
    notices: dict[str, tuple[str, str]] = field(default_factory=dict)
    last_screenshot: str = ""

    def say(self, text: str, seconds: float = 8.0, style: str = "accent") -> None:
        self.status = text
        self.status_style = style
        self.status_until = time.monotonic() + seconds

    def selected_view(self) -> ProcView | None:
        if self.selected is None:
            return None
        for view in self.views:
            if view.key == self.selected:
                return view
        return None


def resolve_selection(state: ViewState) -> int | None:
    """Index of the selected row in ``state.views``; re-homes a selection whose process left."""
    rows = state.views
    if not rows:
        return None
    if state.selected is not None:
        for i, view in enumerate(rows):
            if view.key == state.selected:
                state.last_index = i
                return i
    i = min(state.last_index, len(rows) - 1)
    state.selected = rows[i].key
    state.last_index = i
    return i


def move_selection(state: ViewState, delta: int) -> None:
    """Up/Down/PgUp/PgDn/Home/End on the identity-keyed selection."""
    rows = state.views
    if not rows:
        return
    i = resolve_selection(state) or 0
    i = max(0, min(len(rows) - 1, i + delta))
    state.selected = rows[i].key
    state.last_index = i


def select_key(state: ViewState, key: RowKey) -> None:
    for i, view in enumerate(state.views):
        if view.key == key:
            state.selected = key
            state.last_index = i
            return
