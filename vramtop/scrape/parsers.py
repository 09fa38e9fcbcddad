"""Per-server parsers: an inference server's own metrics text or JSON -> one :class:`Reading`.

Where it sits: ``scrape/core.py`` fetches a server's endpoints (``scrape/fetch.py``) and hands the
bodies here; the readings become ``ServerMetrics`` in the scraper's message. Pure functions, no
I/O. Prometheus text goes through prometheus_client's parser (never regular expressions); JSON
through :mod:`json`. A body that is not what the server kind sends raises :class:`Unexpected`
with a one-line note for the detail panel and ``--once --json``.

What each server says (metric names as the servers' sources define them):

* vLLM: ``vllm:kv_cache_usage_perc`` (0-1; ``vllm:gpu_cache_usage_perc`` before 0.11, read only
  when the new name is absent), ``vllm:num_requests_running`` / ``_waiting``,
  ``vllm:num_preemptions_total`` (a counter), labels ``model_name`` and ``engine`` (one series
  per data-parallel engine), and ``vllm:cache_config_info`` whose labels give the pool size.
* SGLang (``--enable-metrics``): ``sglang:token_usage``, ``sglang:num_running_reqs`` and
  ``sglang:num_queue_reqs`` (older builds: ``num_requests_running`` / ``_waiting``),
  ``sglang:max_total_num_tokens``, retractions as ``sglang:num_retracted_requests_total``; one
  series per ``tp_rank`` (they repeat one scheduler's view, so the largest is taken, not a sum).
* llama.cpp: ``llamacpp:requests_processing`` / ``_deferred`` on ``/metrics`` (``--metrics``),
  the KV ratio gauge on old builds only; ``/slots`` gives ``n_ctx`` and tokens per slot.
* TGI: ``tgi_queue_size``, ``tgi_batch_current_size``, ``tgi_batch_current_max_tokens`` out of
  ``tgi_batch_max_total_tokens``; the model from ``/info``'s ``model_id``.
* Ollama: ``/api/ps`` JSON, one entry per loaded model (``size_vram``, ``context_length``,
  ``digest``); no queue or KV figures.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vramtop.enrich.framework import LLAMA_CPP, OLLAMA, SGLANG, TGI, VLLM
from vramtop.sanitize import clean

# The endpoints each kind is read from, in order; the first one is required.
ENDPOINTS: dict[str, tuple[str, ...]] = {
    VLLM: ("/metrics",),
    SGLANG: ("/metrics",),
    LLAMA_CPP: ("/metrics", "/slots"),
    TGI: ("/metrics", "/info"),
    OLLAMA: ("/api/ps",),
}
PREFIXES: dict[str, str] = {VLLM: "vllm:", SGLANG: "sglang:", LLAMA_CPP: "llamacpp:", TGI: "tgi_"}


class Unexpected(ValueError):
    """The body is not what this kind of server sends; ``str(exc)`` is the note shown."""


@dataclass(frozen=True, slots=True)
class OllamaModel:
    name: str
    digest: str  # hex, without "sha256:"
    size_bytes: int
    size_vram_bytes: int
    context_length: int | None
    expires_at: str


@dataclass(frozen=True, slots=True)
class Reading:
    """One server's figures at one read; None = the server did not say."""

    kind: str
    model: str = ""
    kv_cache_usage: float | None = None  # 0..1
    running: int | None = None
    waiting: int | None = None
    preemptions_total: float | None = None  # a counter: the core turns two reads into a rate
    tokens_total: int | None = None  # KV pool / context capacity in tokens
    note: str = ""
    models: tuple[OllamaModel, ...] = field(default=())


Samples = dict[str, list[tuple[dict[str, str], float]]]


def _families(text: str) -> Iterable[Any]:
    # Imported with the first server's metrics: the parser brings prometheus_client (about
    # 8 MiB), which a machine serving no model never needs.
    from prometheus_client.parser import text_string_to_metric_families

    return text_string_to_metric_families(text)  # type: ignore[no-any-return]


def prometheus_samples(text: str, prefix: str) -> Samples:
    """name -> [(labels, value)] for every finite sample whose name starts with ``prefix``.

    Raises :class:`Unexpected` for text the Prometheus parser rejects, and for text that holds
    no sample of the prefix (an HTML page, another program's metrics).
    """
    out: Samples = {}
    try:
        for family in _families(text):
            for s in family.samples:
                if s.name.startswith(prefix) and math.isfinite(float(s.value)):
                    out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    except Exception as exc:  # the parser raises ValueError and friends on bad lines
        raise Unexpected(f"malformed metrics ({clean(str(exc), 60)})") from None
    if not out:
        raise Unexpected(f"no {prefix} metrics in the answer")
    return out


def _values(samples: Samples, *names: str) -> list[float]:
    for name in names:
        got = samples.get(name)
        if got:
            return [v for _, v in got]
    return []


def _largest(samples: Samples, *names: str) -> float | None:
    vals = _values(samples, *names)
    return max(vals) if vals else None


def _total(samples: Samples, *names: str) -> float | None:
    vals = _values(samples, *names)
    return sum(vals) if vals else None


def _count(value: float | None) -> int | None:
    return None if value is None or value < 0 else round(value)


def _ratio(value: float | None) -> float | None:
    """A 0..1 usage figure; anything outside (a lying server) is dropped."""
    if value is None or not (0.0 <= value <= 1.0):
        return None
    return value


def _label(samples: Samples, key: str) -> str:
    for series in samples.values():
        for labels, _ in series:
            if labels.get(key):
                return clean(labels[key], 120)
    return ""


def _int_label(value: str | None) -> int | None:
    try:
        n = int(float(value)) if value is not None else None
    except ValueError:
        return None
    return n if n is not None and n >= 0 else None


def parse_vllm(text: str) -> Reading:
    s = prometheus_samples(text, "vllm:")
    usage = _largest(s, "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
    tokens = None
    for labels, _ in s.get("vllm:cache_config_info", []):
        tokens = _int_label(labels.get("kv_cache_size_tokens"))
        if tokens is None:
            blocks = _int_label(labels.get("num_gpu_blocks"))
            size = _int_label(labels.get("block_size"))
            tokens = blocks * size if blocks is not None and size is not None else None
        if tokens is not None:
            break
    running = _total(s, "vllm:num_requests_running")
    waiting = _total(s, "vllm:num_requests_waiting")
    if usage is None and running is None and waiting is None:
        raise Unexpected("vllm: metrics without cache or request gauges")
    return Reading(
        VLLM,
        model=_label(s, "model_name"),
        kv_cache_usage=_ratio(usage),
        running=_count(running),
        waiting=_count(waiting),
        preemptions_total=_total(s, "vllm:num_preemptions_total"),
        tokens_total=tokens,
    )


def parse_sglang(text: str) -> Reading:
    s = prometheus_samples(text, "sglang:")
    usage = _largest(s, "sglang:token_usage")
    running = _largest(s, "sglang:num_running_reqs", "sglang:num_requests_running")
    waiting = _largest(s, "sglang:num_queue_reqs", "sglang:num_requests_waiting")
    if usage is None and running is None and waiting is None:
        raise Unexpected("sglang: metrics without token usage or request gauges")
    tokens = _largest(s, "sglang:max_total_num_tokens")
    if usage is None:
        used = _largest(s, "sglang:num_used_tokens")
        if used is not None and tokens:
            usage = used / tokens
    return Reading(
        SGLANG,
        model=_label(s, "model_name"),
        kv_cache_usage=_ratio(usage),
        running=_count(running),
        waiting=_count(waiting),
        # Old builds export retractions as a gauge of the current count: no rate from that.
        preemptions_total=_largest(s, "sglang:num_retracted_requests_total"),
        tokens_total=_count(tokens),
    )


def _json(body: str, what: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Unexpected(f"{what}: not JSON") from None


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _slots(body: str) -> tuple[int, int, int]:
    """(slots processing, tokens in use, context tokens) from llama.cpp's ``/slots``."""
    data = _json(body, "/slots")
    if not isinstance(data, list) or not all(isinstance(x, Mapping) for x in data):
        raise Unexpected("/slots: not a list of slots")
    busy = used = ctx = 0
    for slot in data[:1024]:
        ctx += int(_num(slot.get("n_ctx")) or 0)
        if slot.get("is_processing") is True:
            busy += 1
            past = _num(slot.get("n_past"))
            if past is None:
                decoded = 0.0
                nxt = slot.get("next_token")
                first = nxt[0] if isinstance(nxt, list) and nxt else nxt
                if isinstance(first, Mapping):
                    decoded = _num(first.get("n_decoded")) or 0.0
                past = (_num(slot.get("n_prompt_tokens")) or 0.0) + decoded
            used += int(past)
    if ctx <= 0:
        raise Unexpected("/slots: no slot reports n_ctx")
    return busy, min(used, ctx), ctx


def parse_llama_cpp(metrics: str | None, slots: str | None) -> Reading:
    """Either body may be missing (``--metrics`` off, ``/slots`` off); not both."""
    s: Samples = {}
    note = ""
    if metrics is not None:
        s = prometheus_samples(metrics, "llamacpp:")
    usage = _largest(s, "llamacpp:kv_cache_usage_ratio")
    running = _largest(s, "llamacpp:requests_processing")
    waiting = _largest(s, "llamacpp:requests_deferred")
    tokens = None
    if slots is not None:
        busy, used, ctx = _slots(slots)
        tokens = ctx
        if running is None:
            running = float(busy)
        if usage is None:
            usage = used / ctx
    elif metrics is None:
        raise Unexpected("neither /metrics nor /slots answered")
    if metrics is None:
        note = "no /metrics (start llama-server with --metrics for the queue)"
    return Reading(
        LLAMA_CPP,
        kv_cache_usage=_ratio(usage),
        running=_count(running),
        waiting=_count(waiting),
        tokens_total=tokens,
        note=note,
    )


def parse_tgi(metrics: str, info: str | None) -> Reading:
    s = prometheus_samples(metrics, "tgi_")
    used = _largest(s, "tgi_batch_current_max_tokens")
    total = _largest(s, "tgi_batch_max_total_tokens")
    model = ""
    if info is not None:
        data = _json(info, "/info")
        if isinstance(data, Mapping) and isinstance(data.get("model_id"), str):
            model = clean(data["model_id"], 120)
    return Reading(
        TGI,
        model=model,
        kv_cache_usage=_ratio(used / total) if used is not None and total else None,
        running=_count(_largest(s, "tgi_batch_current_size")),
        waiting=_count(_largest(s, "tgi_queue_size")),
        tokens_total=_count(total),
    )


def _digest(value: object) -> str:
    text = value if isinstance(value, str) else ""
    text = text.removeprefix("sha256:").removeprefix("sha256-").lower()
    return text if text and all(c in "0123456789abcdef" for c in text) else ""


def parse_ollama(body: str) -> Reading:
    data = _json(body, "/api/ps")
    models = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, list):
        raise Unexpected("/api/ps: no models list")
    out = []
    for m in models[:64]:
        if not isinstance(m, Mapping):
            continue
        ctx = _num(m.get("context_length"))
        out.append(
            OllamaModel(
                name=clean(str(m.get("name") or m.get("model") or ""), 120),
                digest=_digest(m.get("digest")),
                size_bytes=int(_num(m.get("size")) or 0),
                size_vram_bytes=int(_num(m.get("size_vram")) or 0),
                context_length=int(ctx) if ctx else None,
                expires_at=clean(str(m.get("expires_at") or ""), 40),
            )
        )
    return Reading(OLLAMA, models=tuple(out), note="" if out else "no model loaded")


def parse(kind: str, bodies: Mapping[str, str | None]) -> Reading:
    """The reading of one server from its endpoint bodies (path -> text, None = no answer)."""
    if kind == VLLM:
        return parse_vllm(_required(bodies, "/metrics"))
    if kind == SGLANG:
        return parse_sglang(_required(bodies, "/metrics"))
    if kind == LLAMA_CPP:
        return parse_llama_cpp(bodies.get("/metrics"), bodies.get("/slots"))
    if kind == TGI:
        return parse_tgi(_required(bodies, "/metrics"), bodies.get("/info"))
    if kind == OLLAMA:
        return parse_ollama(_required(bodies, "/api/ps"))
    raise Unexpected(f"no scraper for {clean(kind, 40)}")


def _required(bodies: Mapping[str, str | None], path: str) -> str:
    body = bodies.get(path)
    if body is None:
        raise Unexpected(f"{path} did not answer")
    return body


def ollama_for_runner(models: Iterable[OllamaModel], argv: Iterable[str]) -> Iterator[OllamaModel]:
    """The /api/ps entries whose blob digest the runner's ``--model`` path names."""
    words = list(argv)
    paths = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--model", "-m")]
    paths += [w.split("=", 1)[1] for w in words if w.startswith("--model=")]
    for m in models:
        if m.digest and any(m.digest in p.lower() for p in paths):
            yield m
