"""The ways vramtop runs, one module each; ``cli.py`` parses the flags and picks one.

``monitor`` (the live TUI: the supervisor and its actors), ``once`` (one sample as a table or a
JSON document), ``record`` (headless logging to CSV/NDJSON), ``replay`` (a recording through
the monitor, or through the analysis as NDJSON) and ``wrap`` (a command run with deep mode on).
``once`` and ``record`` run in one process and never import ``vramtop.actors``: they call the
same cores (procinfo, enricher, stream analyzer, the deep core) directly. ``exits`` holds the
exit statuses and the one-line failure they all report.
"""
