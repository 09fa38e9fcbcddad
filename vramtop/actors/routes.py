"""Who reads each state kind through its newest-wins channel (``actors/mailbox.py``).

Data flow: the sampler publishes "rows" (identities and slots: the bulk of a tick, pickled once
for every reader) and "snapshot" (the numbers, for those that join the two); the analyzer and
enricher read the numbers from shared memory. The analyzer publishes "analysis", the
scraper "scrape" (inference servers' KV cache and queues), the deep actor "deep" (PyTorch
allocator figures of the processes that report them). A kind goes to
every reader listed here that runs in the mode at hand; each gets it through the kind's
newest-wins channel, except a reader that must see every message (the file exporter, which
writes every sample beside its analysis: ``ChildSpec(every_state=True)``), which gets each one
through its command queue.
"""

from __future__ import annotations

STATE_ROUTES: dict[str, tuple[str, ...]] = {
    "rows": ("render", "analyzer", "enricher", "scraper", "exporter", "metrics"),
    "snapshot": ("render", "exporter", "metrics"),
    "analysis": ("render", "exporter", "metrics"),
    "scrape": ("render", "analyzer", "exporter", "metrics"),
    "deep": ("render", "analyzer", "exporter", "metrics"),
}


def readers(kind: str) -> tuple[str, ...]:
    """Where a message of state ``kind`` is sent (actors that do not run are skipped)."""
    return STATE_ROUTES[kind]
