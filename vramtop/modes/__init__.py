"""The ways vramtop runs, one module each (design.md: monitor, once, record, replay, exporter,
wrap); ``cli.py`` parses the command line and dispatches here."""
