"""Outputs that leave vramtop: the ``--once`` table and JSON document (later CSV and NDJSON)."""
