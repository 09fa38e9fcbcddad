"""Themes: palettes of semantic colours. Every colour on screen comes from the active palette.

Semantic names: text, muted, accent, background, panel, selection, ok, warn, crit, used,
reserved, free, header, border, and series1..series4 (the processes of the stacked timeline, told
apart from each other and from the state colours ok / warn / crit). Values are ``#rrggbb``;
blessed maps them down to 256 or 16 colours when the terminal has fewer.
"""

from __future__ import annotations

from dataclasses import dataclass

SEMANTIC = (
    "text", "muted", "accent", "background", "panel", "selection",
    "ok", "warn", "crit", "used", "reserved", "free", "header", "border",
)  # fmt: skip


@dataclass(frozen=True)
class Theme:
    name: str
    colors: dict[str, str]

    def rgb(self, name: str) -> tuple[int, int, int]:
        value = self.colors.get(name) or self.colors["text"]
        return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


def _t(name: str, **colors: str) -> Theme:
    missing = set(SEMANTIC) - colors.keys()
    assert not missing, f"theme {name} lacks {missing}"
    return Theme(name, colors)


THEMES: dict[str, Theme] = {
    t.name: t
    for t in (
        _t("dark", text="#c9d1d9", muted="#8b949e", accent="#58a6ff", background="#0d1117",
           panel="#161b22", selection="#1f6feb", ok="#3fb950", warn="#d29922", crit="#f85149",
           used="#58a6ff", reserved="#bc8cff", free="#30363d", header="#f0f6fc",
           border="#30363d",
           series1="#39c5cf", series2="#e3b341", series3="#db61a2", series4="#7ee787"),
        _t("light", text="#1f2328", muted="#59636e", accent="#0969da", background="#ffffff",
           panel="#f6f8fa", selection="#b6e3ff", ok="#1a7f37", warn="#9a6700", crit="#cf222e",
           used="#0969da", reserved="#8250df", free="#d0d7de", header="#000000",
           border="#d0d7de",
           series1="#1b7c83", series2="#bf8700", series3="#bf3989", series4="#4ac26b"),
        _t("nord", text="#d8dee9", muted="#7b88a1", accent="#88c0d0", background="#2e3440",
           panel="#3b4252", selection="#5e81ac", ok="#a3be8c", warn="#ebcb8b", crit="#bf616a",
           used="#81a1c1", reserved="#b48ead", free="#434c5e", header="#eceff4",
           border="#4c566a",
           series1="#8fbcbb", series2="#d08770", series3="#b48ead", series4="#a3be8c"),
        _t("catppuccin", text="#cdd6f4", muted="#9399b2", accent="#89b4fa",
           background="#1e1e2e", panel="#313244", selection="#585b70", ok="#a6e3a1",
           warn="#f9e2af", crit="#f38ba8", used="#89b4fa", reserved="#cba6f7", free="#45475a",
           header="#f5e0dc", border="#585b70",
           series1="#94e2d5", series2="#fab387", series3="#f5c2e7", series4="#a6e3a1"),
        _t("dracula", text="#f8f8f2", muted="#9aa5ce", accent="#8be9fd", background="#282a36",
           panel="#343746", selection="#44475a", ok="#50fa7b", warn="#f1fa8c", crit="#ff5555",
           used="#bd93f9", reserved="#ff79c6", free="#44475a", header="#f8f8f2",
           border="#6272a4",
           series1="#8be9fd", series2="#ffb86c", series3="#ff79c6", series4="#50fa7b"),
        _t("solarized", text="#839496", muted="#586e75", accent="#268bd2",
           background="#002b36", panel="#073642", selection="#0b4f5e", ok="#859900",
           warn="#b58900", crit="#dc322f", used="#268bd2", reserved="#6c71c4", free="#0b4f5e",
           header="#eee8d5", border="#586e75",
           series1="#2aa198", series2="#cb4b16", series3="#d33682", series4="#859900"),
    )
}  # fmt: skip

THEME_ORDER = tuple(THEMES)


def next_theme(name: str) -> str:
    i = THEME_ORDER.index(name) if name in THEME_ORDER else -1
    return THEME_ORDER[(i + 1) % len(THEME_ORDER)]
