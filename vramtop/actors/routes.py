"""Who reads each state kind through its newest-wins channel (``actors/mailbox.py``).

Data flow: the sampler publishes "rows" (identities and slots: the bulk of a tick, pickled once
for every reader) and "snapshot" (the numbers, for the render process, which joins the two);
the analyzer and enricher read the numbers from shared memory. The analyzer publishes
"analysis", the deep actor "deep" (PyTorch allocator figures of reporting processes). The
exporter, which writes every sample beside its analysis, subscribes to no channel: it gets each
one through its command queue (``ChildSpec(every_state=True)``).
"""

from __future__ import annotations

STATE_ROUTES: dict[str, tuple[str, ...]] = {
    "snapshot": ("render",),
    "rows": ("render", "analyzer", "enricher"),
    "analysis": ("render",),
    "deep": ("render", "analyzer"),
}
