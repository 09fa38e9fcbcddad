"""What the scraper tells the other actors about one inference server (or one Ollama runner).

Where it sits: ``scrape/core.py`` builds one :class:`ServerMetrics` per server tree and sends them
in a :class:`~vramtop.messages.ScrapeMessage` to the render process (KV column, detail panel),
the analyzer (verdicts) and the exporter (``--once --json``, CSV). None / "" = not reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from vramtop.messages import ProcessIdentity
from vramtop.wire import compact


@compact
@dataclass(frozen=True, slots=True)
class ServerMetrics:
    kind: str  # "vLLM", "SGLang", "llama.cpp", "TGI", "Ollama"
    url: str  # what was read ("" when no endpoint was found)
    processes: tuple[ProcessIdentity, ...]  # the GPU processes these figures belong to
    server_pid: int = 0  # the process that holds the listening socket
    model: str = ""  # as the server reports it (sanitised)
    kv_cache_usage: float | None = None  # 0..1
    running: int | None = None
    waiting: int | None = None
    preemptions_per_s: float | None = None
    tokens_total: int | None = None  # KV pool / context capacity in tokens
    queue_growing: bool = False  # more requests waiting than at the previous read
    read_at: float = 0.0  # time.time() of the read these figures come from, 0 = none
    note: str = ""  # why figures are missing, or what is odd ("" = all well)

    @property
    def shared(self) -> bool:
        """The figures are the server's, shown on each of its GPU processes (TP ranks)."""
        return len(self.processes) > 1

    def to_dict(self) -> dict[str, object]:
        """The ``server`` object of ``--once --json`` (see export/schema.json)."""
        return {
            "kind": self.kind,
            "url": self.url,
            "model": self.model,
            "kv_cache_usage": self.kv_cache_usage,
            "running": self.running,
            "waiting": self.waiting,
            "preemptions_per_s": self.preemptions_per_s,
            "tokens_total": self.tokens_total,
            "read_at": self.read_at or None,
            "note": self.note,
            "server_pid": self.server_pid or None,
            "shared": self.shared,
        }


def url_of(host: str, port: int, path: str) -> str:
    """The URL of ``path`` on a listener (an IPv6 host in brackets)."""
    return f"http://[{host}]:{port}{path}" if ":" in host else f"http://{host}:{port}{path}"
