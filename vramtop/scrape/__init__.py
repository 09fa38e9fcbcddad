"""Inference servers' own HTTP metrics (KV cache, queue), read safely over loopback.

``fetch`` (the guarded GET), ``parsers`` (one per server kind), ``discovery`` (which listener
belongs to a GPU process's server tree), ``core`` (the scraper actor's functional core) and
``model`` (what it sends).
"""
