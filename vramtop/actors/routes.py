"""Who reads each state kind through its newest-wins channel (``actors/mailbox.py``).

Data flow: the sampler publishes "sample" (the whole snapshot) and "rows" (identities and slots
only: the numbers are in shared memory), the analyzer publishes "analysis". The exporter, which
writes every sample beside its analysis, subscribes to no channel: it gets each one through its
command queue (``ChildSpec(every_state=True)``).
"""

from __future__ import annotations

STATE_ROUTES: dict[str, tuple[str, ...]] = {
    "sample": ("render",),
    "rows": ("analyzer", "enricher"),
    "analysis": ("render",),
}
