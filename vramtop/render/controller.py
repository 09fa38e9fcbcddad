"""The UI's behaviour without a terminal: messages and keys in, a drawn :class:`Grid` out.

Where it sits: the render actor (``actors/render.py``) owns the terminal and forwards every
message, key and mouse event here; this class keeps the :class:`ViewState`, the enrichment and
analysis stores, the history reader and the kill flow, and draws frames with ``screen.py``.
Tests drive it directly, the same way the actor does.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from vramtop.config import Config, resolve_screenshot_dir
from vramtop.messages import (
    ActorHealth,
    AnalysisMessage,
    ConfigUpdate,
    DeepStateMessage,
    EnrichmentMessage,
    LogLine,
    Notice,
    SampleMessage,
    ScrapeMessage,
)
from vramtop.render.filters import ProcessFilter, visible_rows
from vramtop.render.grid import Grid
from vramtop.render.history import History, NoHistory
from vramtop.render.keys import action_for
from vramtop.render.killflow import DISABLED, KillFlow
from vramtop.render.model import DESCENDING_FIRST, SORT_ORDER, build_views, tree_items
from vramtop.render.screen import draw, pick_layout
from vramtop.render.state import ViewState, move_selection, resolve_selection, select_key
from vramtop.render.svg import save_screenshot
from vramtop.render.theme import THEMES, next_theme

LAYOUT_ORDER = ("auto", "full", "compact", "mini")
WHEEL_ROWS = 3


class Ui:
    def __init__(
        self,
        config: Config | None = None,
        *,
        no_color: bool = False,
        filters: ProcessFilter | None = None,
        history: History | None = None,
        kill: KillFlow | None = None,
    ) -> None:
        config = config or Config()
        self.state = ViewState(config=config, no_color=no_color,
                               filters=filters or ProcessFilter())  # fmt: skip
        self.history: History = history or NoHistory()
        self.kill = kill or KillFlow(config.display.enable_kill)
        self.quit = False
        self.last_grid: Grid | None = None
        self._deferred = 0  # inside batch(): rows are rebuilt once, when next needed
        self._stale = False
        self._apply_config(config, initial=True)

    # -- messages ---------------------------------------------------------------------------
    def handle(self, message: object) -> bool:
        """Take one message; True when the screen should be redrawn."""
        st = self.state
        if isinstance(message, SampleMessage):
            st.sample = message
            st.events.observe_sample(message)
            st.knowledge.forget_except({r.identity for r in message.rows})
            forget = getattr(self.history, "forget", None)
            if forget is not None:
                forget()
            self.rebuild()
            return True
        if isinstance(message, ActorHealth):
            st.health = message.actors
            return True
        if isinstance(message, LogLine):
            # What an actor wrote to stderr: shown here, printed in full after the exit.
            st.say(message.text, 10, "warn")
            return True
        if isinstance(message, ConfigUpdate):
            if message.error:
                st.say(f"config not reloaded: {message.error}", 20, "crit")
            else:
                self._apply_config(message.config)
                said = f"config reloaded from {message.source or 'defaults'}"
                if message.note:
                    st.say(f"{said}; {message.note}", 20, "warn")
                else:
                    st.say(said, 8)
            return True
        if isinstance(message, Notice):
            if message.text:
                st.notices[message.key] = (message.text, message.level)
            else:
                st.notices.pop(message.key, None)
            if message.said and not message.text:
                st.say(message.said, 8, "ok")  # e.g. "recording resumed"
            return True
        if isinstance(message, EnrichmentMessage):
            st.knowledge.add_enrichment(message.items, message.notes)
            self.rebuild()
            return True
        if isinstance(message, AnalysisMessage):
            st.knowledge.set_analysis(message.result)
            st.events.observe_analysis(message.result)
            self.rebuild()
            return True
        if isinstance(message, ScrapeMessage):
            st.knowledge.set_servers(message.servers)
            self.rebuild()
            return True
        if isinstance(message, DeepStateMessage):
            st.knowledge.set_deep(message)
            self.rebuild()
            return True
        return False

    def _apply_config(self, config: Config, initial: bool = False) -> None:
        st = self.state
        old = st.config
        st.config = config
        # Only what the file changed overrides a key press (t, L) made since the last reload.
        if initial or config.display.theme != old.display.theme:
            st.theme = config.display.theme if config.display.theme in THEMES else "dark"
        if initial or config.display.layout != old.display.layout:
            st.layout = config.display.layout
        st.accessible = config.display.accessible
        if not config.display.enable_kill:
            self.kill.enabled = False  # a reload may switch kill off, never back on
        if not initial:
            self.rebuild()

    # -- rows ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Messages handled inside rebuild the rows once, when a frame or a key needs them:
        a sample and its analysis in one batch, a round of enrichment waiting for the next
        frame (with 8,192 processes a rebuild is the render process's largest cost)."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1

    def fresh(self) -> None:
        """Bring the rows up to date with every message taken (a no-op when they are)."""
        if self._stale and not self._deferred:
            self._stale = False
            self.rebuild()

    def rebuild(self) -> None:
        if self._deferred:
            self._stale = True
            return
        self._stale = False
        st = self.state
        if st.sample is None:
            st.views, st.items = [], []
            return
        seen = visible_rows(
            st.sample.snapshot,
            st.sample.rows,
            st.knowledge.enrichment,
            show_other_users=st.config.display.show_other_users,
            filters=st.filters,
        )
        st.others = seen.others
        views = build_views(
            st.sample, st.knowledge, seen.rows,
            text=st.filter_text, sort=st.sort, descending=st.descending,
        )  # fmt: skip
        if st.tree:
            st.items = tree_items(views, st.knowledge)
            st.views = [it for it in st.items if not hasattr(it, "children")]  # type: ignore[misc]
        else:
            st.items = list(views)
            st.views = views
        resolve_selection(st)

    # -- keys ----------------------------------------------------------------------------------
    def key(self, tok: str) -> bool:
        """One key token (``KEY_UP``, ``q``...); True when the screen should be redrawn."""
        self.fresh()
        st = self.state
        if st.filter_editing:
            return self._filter_key(tok)
        if st.overlay == "kill":
            return self._kill_key(tok)
        action = action_for(tok)
        if action is None:
            return False
        if st.overlay and action not in ("quit", "escape", "help", "detail", "theme",
                                         "screenshot", "up", "down", "chart_mode"):  # fmt: skip
            return False
        getattr(self, f"_do_{action}")()
        return True

    def _do_quit(self) -> None:
        self.quit = True

    def _do_up(self) -> None:
        move_selection(self.state, -1)

    def _do_down(self) -> None:
        move_selection(self.state, 1)

    def _do_page_up(self) -> None:
        move_selection(self.state, -max(1, self.state.page - 1))

    def _do_page_down(self) -> None:
        move_selection(self.state, max(1, self.state.page - 1))

    def _do_home(self) -> None:
        move_selection(self.state, -(10**9))

    def _do_end(self) -> None:
        move_selection(self.state, 10**9)

    def _do_detail(self) -> None:
        st = self.state
        st.overlay = "" if st.overlay == "detail" else "detail"

    def _do_help(self) -> None:
        st = self.state
        st.overlay = "" if st.overlay == "help" else "help"

    def _do_escape(self) -> None:
        st = self.state
        if st.overlay:
            st.overlay = ""
        elif st.filter_text:
            st.filter_text = ""
            self.rebuild()

    def _do_filter(self) -> None:
        self.state.filter_editing = True

    def _do_sort_next(self, step: int = 1) -> None:
        st = self.state
        # Only the columns on screen: sorting by one the layout hides would look random.
        order = [c for c in SORT_ORDER if c in st.sortable] or list(SORT_ORDER)
        i = order.index(st.sort) if st.sort in order else (-1 if step > 0 else 0)
        st.sort = order[(i + step) % len(order)]
        st.descending = st.sort in DESCENDING_FIRST
        st.say(f"sorted by {st.sort}", 3)
        self.rebuild()

    def _do_sort_prev(self) -> None:
        self._do_sort_next(-1)

    def _do_sort_reverse(self) -> None:
        self.state.descending = not self.state.descending
        self.rebuild()

    def _do_tree(self) -> None:
        st = self.state
        st.tree = not st.tree
        st.say("tree view on" if st.tree else "tree view off", 3)
        self.rebuild()

    def _do_theme(self) -> None:
        st = self.state
        st.theme = next_theme(st.theme)
        st.say(f"theme {st.theme}", 3)

    def _do_chart_mode(self) -> None:
        st = self.state
        st.chart_stacked = not st.chart_stacked
        st.say("timeline: stacked by top processes" if st.chart_stacked
               else "timeline: GPU total", 3)  # fmt: skip

    def _do_layout(self) -> None:
        st = self.state
        i = LAYOUT_ORDER.index(st.layout) if st.layout in LAYOUT_ORDER else 0
        st.layout = LAYOUT_ORDER[(i + 1) % len(LAYOUT_ORDER)]
        said = f"layout {st.layout}"
        if self.last_grid is not None:
            # Say what auto means here: the first press (auto -> full) often changes nothing.
            w, h = self.last_grid.width, self.last_grid.height
            auto = pick_layout(w, h)
            if st.layout == "auto":
                said += f" ({auto} at {w}x{h})"
            elif st.layout == auto:
                said += f" (what auto shows at {w}x{h})"
        st.say(said, 4)

    def _do_screenshot(self) -> None:
        st = self.state
        grid = self.last_grid
        if grid is None:
            return
        try:
            path = save_screenshot(grid, THEMES[st.theme], resolve_screenshot_dir(
                st.config.display))  # fmt: skip
        except OSError as exc:
            st.say(f"screenshot failed: {exc}", 15, "crit")
            return
        st.last_screenshot = str(path)
        st.say(f"screenshot saved: {path}", 20, "ok")

    def _do_kill(self) -> None:
        st = self.state
        if not self.kill.enabled:
            backend = st.sample.snapshot.backend if st.sample is not None else ""
            if backend in ("fleet", "replay"):
                # Read-only views: the processes are other machines' (or history).
                where = "other machines" if backend == "fleet" else "a recording"
                st.say(f"read-only: these processes are {where}'; nothing to kill", 8, "warn")
            else:
                st.say(DISABLED, 8, "warn")
            return
        view = st.selected_view()
        if view is None:
            st.say("no process selected", 4, "warn")
            return
        st.kill = self.kill.open(view)
        st.overlay = "kill" if st.kill is not None else ""

    def _kill_key(self, tok: str) -> bool:
        st = self.state
        dialog = st.kill
        if dialog is None:
            st.overlay = ""
            return True
        confirming = dialog.phase == "confirm" and not dialog.refusal
        if tok in ("n", "N", "KEY_ESCAPE", "q"):
            self.kill.close()
            st.overlay = ""
            st.kill = self.kill.dialog
        elif not confirming:
            return False
        elif dialog.risk and not dialog.risk_asked:
            if tok not in ("y", "Y", "KEY_ENTER"):
                return False
            dialog.risk_asked = True  # the second question, naming the risk
        elif dialog.risk:
            if tok != "Y":
                return False  # only an explicit shift-Y kills what is not the user's own job
            self.kill.confirm()
        elif tok in ("y", "Y", "KEY_ENTER"):
            self.kill.confirm()
        else:
            return False
        return True

    def _filter_key(self, tok: str) -> bool:
        st = self.state
        if tok == "KEY_ESCAPE":
            st.filter_text = ""
            st.filter_editing = False
        elif tok == "KEY_ENTER":
            st.filter_editing = False
        elif tok in ("KEY_BACKSPACE", "KEY_DELETE"):
            st.filter_text = st.filter_text[:-1]
        elif len(tok) == 1 and tok.isprintable():
            st.filter_text = (st.filter_text + tok)[:64]
        elif tok in ("KEY_UP", "KEY_DOWN"):
            move_selection(st, -1 if tok == "KEY_UP" else 1)
            return True
        else:
            return False
        self.rebuild()
        return True

    # -- mouse ----------------------------------------------------------------------------------
    def mouse(self, x: int, y: int, button: int, pressed: bool) -> bool:
        """SGR mouse report (0-based cell); True when the screen should be redrawn."""
        self.fresh()
        st = self.state
        if button in (64, 65):  # wheel up / down
            if st.overlay:
                return False
            move_selection(st, -WHEEL_ROWS if button == 64 else WHEEL_ROWS)
            return True
        if button == 0 and pressed and not st.overlay:
            key = st.row_at.get(y)
            if key is not None:
                select_key(st, key)
                return True
        return False

    # -- frames ---------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Periodic work (the kill countdown); True when the screen should be redrawn."""
        if self.kill.dialog is None:
            return False
        was = self.kill.running
        self.kill.poll()
        dialog = self.kill.dialog
        st = self.state
        if was and dialog is not None and not self.kill.running:
            st.say(f"kill {dialog.phase}: {dialog.message}", 20,
                   "ok" if dialog.phase in ("exited", "killed") else "crit")  # fmt: skip
        return was

    def draw(self, width: int, height: int, now: float | None = None) -> Grid:
        self.fresh()
        grid = Grid(width, height)
        if self.kill.dialog is not None:
            self.state.kill = self.kill.dialog
        draw(grid, self.state, self.history, now if now is not None else time.time())
        self.last_grid = grid
        return grid

    def replace_filters(self, filters: ProcessFilter) -> None:
        self.state.filters = filters
        self.rebuild()
