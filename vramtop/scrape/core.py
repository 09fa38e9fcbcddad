"""The scraper's functional core: GPU processes in, per-server KV cache and queue figures out.

Where it sits (design.md: ``vramtop: scraper``): the sampler's :class:`ProcessRows` say which
processes hold GPU memory, the enricher's :class:`EnrichmentMessage` which of them run an
inference server; once per ``scraping.rate_limit_seconds`` this core finds each server's
listening socket (``scrape/discovery.py``), reads it (``scrape/fetch.py``), parses the answer
(``scrape/parsers.py``) and sends one :class:`ScrapeMessage` to "render", "analyzer" and
"exporter". Tests, ``--once`` and the benchmark call it directly; the actor shell only delivers
its messages.

Attribution: the figures of one server belong to every GPU process of its server tree that reads
from the same listener (each TP rank of one vLLM server shows the same KV figure, marked as the
server's); an Ollama server's figures are split per runner by the model digest in the runner's
``--model``. Two servers never share a listener, so their figures never mix.

``scraping.enable = false``: no /proc socket table is read and no socket is ever opened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vramtop.config import Config
from vramtop.enrich import framework as fw
from vramtop.enrich.procfs import ProcFS
from vramtop.messages import (
    ConfigUpdate,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRow,
    ProcessRows,
    SampleMessage,
    ScrapeMessage,
)
from vramtop.sanitize import clean
from vramtop.scrape import parsers
from vramtop.scrape.discovery import Candidate, Discovery
from vramtop.scrape.model import ServerMetrics, url_of

if TYPE_CHECKING:  # --once runs this core without the actor system: no actor module at run time
    from vramtop.actors.base import ActorContext, Out
    from vramtop.scrape.fetch import FetchResult

Fetcher = Callable[[str, int, str, float], "FetchResult"]

# As actors/routes.py's "scrape" readers (not imported: --once runs this core without actors).
DESTINATIONS = ("render", "analyzer", "exporter", "metrics")
MAX_CANDIDATES = 3  # listeners tried per server and round
TARGETS_MAX = 256  # remembered listeners (bounded memory)
EARLY_GAP_S = 1.0  # a new server process is looked at no sooner than this after the last round
ROUND_MIN_S = 1.0  # a scrape round may take at least this long, else 4 x timeout_ms


@dataclass
class _Target:
    """What the last read of one listener gave."""

    kind: str
    url: str
    at: float = -1e18  # monotonic time of the last read
    read_at: float = 0.0  # wall time of the last good read
    reading: parsers.Reading | None = None
    note: str = "not read yet"
    counter: tuple[float, float] | None = None  # (preemptions, monotonic time)
    rate: float | None = None
    model: str = ""  # TGI's /info, read once
    growing: bool = False  # more requests waiting than at the read before


def _failure_note(result: FetchResult) -> str:
    if result.error:
        return result.error
    return f"HTTP {result.status}"


class ScraperCore:
    name = "scraper"

    def __init__(
        self,
        config: Config | None = None,
        procfs: ProcFS | None = None,
        my_uid: int | None = None,
        fetcher: Fetcher | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or Config()
        self.procfs = procfs or ProcFS()
        self.my_uid = my_uid
        # The HTTP client (urllib3, ssl: about 8 MiB) is imported with the first server found:
        # a machine that serves no model never pays for it.
        self._fetcher = fetcher
        self.wall = wall
        self.done = False
        self.rows: tuple[ProcessRow, ...] = ()
        self.hints: dict[ProcessIdentity, str] = {}  # the enricher's framework per process
        self.kinds: dict[ProcessIdentity, str] = {}  # own argv detection, cached by identity
        self._known: set[ProcessIdentity] = set()  # the identities of the last rows
        self.targets: dict[tuple[str, int], _Target] = {}
        self.next_round = 0.0
        self.last: ScrapeMessage | None = None
        self.fetches = 0  # requests made (diagnostics, benchmark)
        self._round_deadline = 0.0
        self._last_round = -math.inf

    # -- the actor protocol ----------------------------------------------------------------------

    def start(self, ctx: ActorContext) -> Out:
        self.config = ctx.config
        return []

    def handle(self, batch: Sequence[object], now: float) -> Out:
        for message in batch:
            if isinstance(message, ProcessRows | SampleMessage):
                current = {r.identity for r in message.rows}
                self.rows = message.rows
                if not current <= self._known:
                    self._soon(now)  # a new process: look soon
                self._known = current
            elif isinstance(message, EnrichmentMessage):
                for item in message.items:
                    if item.framework in fw.SERVING:
                        if self.hints.get(item.identity) != item.framework:
                            self._soon(now)
                        self.hints[item.identity] = item.framework
            elif isinstance(message, ConfigUpdate) and not message.error:
                self.config = message.config
                self._soon(now)
        return []

    def _soon(self, now: float) -> None:
        """Bring the next round forward, but never closer than EARLY_GAP_S to the last one
        (processes that come and go by the hundred would otherwise mean a round per tick)."""
        self.next_round = min(self.next_round, max(now, self._last_round + EARLY_GAP_S))

    def tick(self, now: float) -> tuple[float, Out]:
        cfg = self.config.scraping
        if not cfg.enable:
            self.targets.clear()
            if self.last is not None and self.last.servers:
                # Switched off by a reload: the figures shown so far are withdrawn, once.
                self.last = ScrapeMessage((), self.wall())
                return now + 1.0, [(d, self.last) for d in DESTINATIONS]
            return now + 1.0, []
        if now < self.next_round:
            return self.next_round, []
        message = self.scrape(now)
        self._last_round = now
        self.next_round = now + cfg.rate_limit_seconds
        return self.next_round, [(d, message) for d in DESTINATIONS]

    def stop(self) -> None:
        self.targets.clear()

    # -- one round -------------------------------------------------------------------------------

    def serving(self, discovery: Discovery) -> list[tuple[ProcessIdentity, str]]:
        """(identity, kind hint) of the GPU processes that run an inference server."""
        out: list[tuple[ProcessIdentity, str]] = []
        seen: set[ProcessIdentity] = set()
        alive = set()
        for row in self.rows:
            ident = row.identity
            alive.add(ident)
            if ident in seen or not row.same_user:
                continue
            seen.add(ident)
            kind = self.hints.get(ident, "") or self.kinds.get(ident, "")
            if not kind and ident in self.kinds:
                continue  # judged before as no server: an identity never changes its argv
            if not discovery.is_alive(ident):
                continue  # gone, or its PID now belongs to another process
            if not kind:
                kind = self.kinds[ident] = discovery.kind_of(ident.pid)
            if kind in fw.SERVING:
                out.append((ident, kind))
        # Processes that left the GPUs are forgotten (bounded memory).
        for store in (self.hints, self.kinds):
            for gone in [i for i in store if i not in alive]:
                del store[gone]
        return out

    def scrape(self, now: float) -> ScrapeMessage:
        """Find, read and attribute every server once (each listener at most once per rate
        limit period); the message for the other actors."""
        cfg = self.config.scraping
        # However many servers stall, a round ends in bounded time, so the actor keeps answering
        # its inbox (a stop, a new config) and its heartbeat.
        self._round_deadline = time.monotonic() + max(ROUND_MIN_S, 4 * cfg.timeout_ms / 1000.0)
        discovery = Discovery(self.procfs, self.my_uid)
        groups: dict[tuple[str, int], list[ProcessIdentity]] = {}
        owners: dict[tuple[str, int], int] = {}
        servers: list[ServerMetrics] = []
        todo: list[tuple[ProcessIdentity, str, list[Candidate]]] = []
        for ident, hint in self.serving(discovery):
            found = discovery.targets(ident.pid, cfg.allowed_ports, hint)
            tree = found.tree
            kind = tree.kind if tree is not None and tree.kind else hint
            if not found.candidates:
                servers.append(ServerMetrics(kind, "", (ident,), note=clean(found.note, 160)))
                continue
            todo.append((ident, kind, found.candidates[:MAX_CANDIDATES]))
        # The least recently read first: when stalling servers spend a round's budget, the ones
        # left out are the first read in the next round.
        todo.sort(key=lambda item: self._last_read(item[2][0]))
        for ident, kind, candidates in todo:
            chosen = self._choose(kind, candidates, now)
            key = (chosen.host, chosen.port)
            groups.setdefault(key, []).append(ident)
            owners[key] = chosen.owner_pid
        for key, idents in groups.items():
            servers.extend(self._attribute(self.targets[key], idents, owners[key], discovery))
        if len(self.targets) > TARGETS_MAX:
            for stale in sorted(self.targets, key=lambda k: self.targets[k].at)[:-TARGETS_MAX]:
                del self.targets[stale]
        self.last = ScrapeMessage(tuple(servers), self.wall())
        return self.last

    def _last_read(self, cand: Candidate) -> float:
        target = self.targets.get((cand.host, cand.port))
        return target.at if target is not None else -math.inf

    def _choose(self, kind: str, candidates: Sequence[Candidate], now: float) -> Candidate:
        """The first candidate that answers as ``kind`` does (the best one when none does)."""
        for cand in candidates:
            target = self._read(kind, cand, now)
            if target.reading is not None:
                return cand
        return candidates[0]

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            from vramtop.scrape.fetch import fetch

            self._fetcher = fetch
        return self._fetcher

    def _read(self, kind: str, cand: Candidate, now: float) -> _Target:
        key = (cand.host, cand.port)
        target = self.targets.get(key)
        if target is None or target.kind != kind:
            target = _Target(kind, url_of(cand.host, cand.port, parsers.ENDPOINTS[kind][0]))
            self.targets[key] = target
        if now - target.at < self.config.scraping.rate_limit_seconds:
            return target  # per-target rate limit: the last answer stands
        if time.monotonic() > self._round_deadline:
            return target  # this round is spent (stalling servers): read it first next round
        target.at = now
        timeout = self.config.scraping.timeout_ms / 1000.0
        bodies: dict[str, str | None] = {}
        first_failure = ""
        cut_note = ""
        for path in parsers.ENDPOINTS[kind]:
            if path == "/info" and target.model:
                continue
            self.fetches += 1
            result = self.fetcher(cand.host, cand.port, path, timeout)
            if result.ok:
                bodies[path] = result.body.decode("utf-8", "replace")
            elif result.truncated and path == "/metrics" and result.body:
                # A big metrics page (histograms of a long-running server): its gauges come
                # first, and Prometheus text is read line by line, so the first 64 KiB will do.
                bodies[path] = result.body.decode("utf-8", "replace")
                cut_note = f"{path}: {result.error}; figures from the first part"
            else:
                bodies[path] = None
                if not first_failure:
                    first_failure = f"{path}: {_failure_note(result)}"
                    if result.status == 404 and kind == fw.SGLANG:
                        first_failure += " (SGLang serves it only with --enable-metrics)"
                if result.error and "timed out" in result.error:
                    break  # a server that stalls one request gets no second one this round
        try:
            reading = parsers.parse(kind, bodies)
        except parsers.Unexpected as exc:
            target.reading = None
            target.counter = None
            target.rate = None
            required = parsers.ENDPOINTS[kind][0]
            no_answer = all(b is None for b in bodies.values()) or (
                bodies.get(required) is None and kind != fw.LLAMA_CPP
            )
            why = first_failure if no_answer else "; ".join(n for n in (cut_note, str(exc)) if n)
            target.note = clean(why, 160)
            return target
        if kind == fw.TGI:
            target.model = reading.model or target.model
            reading = replace(reading, model=target.model)
        self._rate(target, reading, now)
        before = target.reading.waiting if target.reading is not None else None
        target.growing = (
            reading.waiting is not None and before is not None and reading.waiting > before
        )
        target.reading = reading
        target.read_at = self.wall()
        target.note = clean("; ".join(n for n in (cut_note, reading.note) if n), 160)
        return target

    @staticmethod
    def _rate(target: _Target, reading: parsers.Reading, now: float) -> None:
        total = reading.preemptions_total
        if total is None:
            target.counter, target.rate = None, None
            return
        previous = target.counter
        target.counter = (total, now)
        if previous is None or now <= previous[1] or total < previous[0]:
            target.rate = None  # first read, or the counter was reset (server restart)
        else:
            target.rate = (total - previous[0]) / (now - previous[1])

    def _attribute(
        self,
        target: _Target,
        idents: list[ProcessIdentity],
        owner: int,
        discovery: Discovery,
    ) -> list[ServerMetrics]:
        r = target.reading
        base = ServerMetrics(
            target.kind, target.url, tuple(idents), server_pid=owner, note=target.note
        )
        if r is None:
            return [base]
        if target.kind != fw.OLLAMA:
            return [
                replace(
                    base,
                    model=r.model,
                    kv_cache_usage=r.kv_cache_usage,
                    running=r.running,
                    waiting=r.waiting,
                    preemptions_per_s=target.rate,
                    tokens_total=r.tokens_total,
                    queue_growing=target.growing,
                    read_at=target.read_at,
                )
            ]
        out = []
        for ident in idents:
            info = discovery.info(ident.pid)
            argv = fw.tokens(info[2]) if info is not None else []
            matches = list(parsers.ollama_for_runner(r.models, argv))
            if not matches and len(r.models) == 1 and len(idents) == 1:
                matches = list(r.models)  # one runner, one model: they are each other's
            if not matches:
                note = r.note or "no /api/ps entry matches this runner's model"
                out.append(replace(base, processes=(ident,), read_at=target.read_at, note=note))
                continue
            m = matches[0]
            out.append(
                replace(
                    base,
                    processes=(ident,),
                    model=m.name,
                    tokens_total=m.context_length,
                    read_at=target.read_at,
                    note=target.note,
                )
            )
        return out
