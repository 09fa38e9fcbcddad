"""The terminal face: widgets draw into a cell grid; a writer sends only the changed cells.

Data flow: ``SampleMessage`` -> ``view.py`` (what to show) -> ``layout.py`` (where) -> ``grid.py``
(cells with semantic styles) -> ``writer.py`` (escape sequences via blessed, colours from the
active ``theme.py`` palette). The same grid gives test assertions and, later, SVG screenshots.
"""
