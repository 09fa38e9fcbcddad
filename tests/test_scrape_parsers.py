"""Each server's metrics, as its sources and documentation show them, parsed into the figures
vramtop shows — new and old metric names, and what happens when a body is not what it should be."""

from __future__ import annotations

import json

import pytest
from scrape_helpers import (
    DIGEST,
    LLAMA_METRICS,
    LLAMA_SLOTS,
    SGLANG_NEW,
    SGLANG_OLD,
    TGI_INFO,
    TGI_METRICS,
    VLLM_NEW,
    VLLM_OLD,
    ollama_ps,
)

from vramtop.scrape import parsers
from vramtop.scrape.parsers import Unexpected


def test_vllm_current_names() -> None:
    r = parsers.parse_vllm(VLLM_NEW.replace("PREEMPT", "11"))
    assert r.kv_cache_usage == pytest.approx(0.42)
    assert (r.running, r.waiting) == (7, 3)
    assert r.preemptions_total == 11
    assert r.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert r.tokens_total == 2048 * 16  # num_gpu_blocks x block_size


def test_vllm_old_cache_name_is_the_fallback_only() -> None:
    r = parsers.parse_vllm(VLLM_OLD)
    assert r.kv_cache_usage == pytest.approx(0.17)
    assert (r.running, r.waiting, r.model) == (2, 0, "Qwen/Qwen2.5-7B")
    both = VLLM_NEW.replace("PREEMPT", "0") + 'vllm:gpu_cache_usage_perc{engine="0"} 0.99\n'
    assert parsers.parse_vllm(both).kv_cache_usage == pytest.approx(0.42)


def test_vllm_data_parallel_engines_add_their_queues() -> None:
    text = VLLM_OLD.replace("gpu_cache_usage_perc", "kv_cache_usage_perc") + (
        'vllm:num_requests_running{model_name="Qwen/Qwen2.5-7B",engine="1"} 5.0\n'
    )
    text = text.replace("# TYPE vllm:num_requests_waiting", "# TYPE vllm:x")
    assert parsers.parse_vllm(text).running == 7


def test_vllm_kv_size_in_tokens_when_the_server_says_it() -> None:
    text = VLLM_OLD + 'vllm:cache_config_info{kv_cache_size_tokens="123456"} 1.0\n'
    assert parsers.parse_vllm(text).tokens_total == 123456


def test_sglang_new_names_and_tp_ranks_not_double_counted() -> None:
    r = parsers.parse_sglang(SGLANG_NEW)
    assert r.kv_cache_usage == pytest.approx(0.61)
    assert (r.running, r.waiting, r.tokens_total) == (12, 5, 480000)
    assert r.preemptions_total == 4
    assert r.model == "Qwen/Qwen3-8B"


def test_sglang_old_names() -> None:
    r = parsers.parse_sglang(SGLANG_OLD)
    assert (r.kv_cache_usage, r.running, r.waiting) == (pytest.approx(0.25), 3, 1)
    assert r.preemptions_total is None  # the old gauge is a count now, not a counter


def test_llama_cpp_slots_only() -> None:
    r = parsers.parse_llama_cpp(None, LLAMA_SLOTS)
    assert r.running == 1
    assert r.tokens_total == 8192
    assert r.kv_cache_usage == pytest.approx((900 + 124) / 8192)
    assert "--metrics" in r.note


def test_llama_cpp_metrics_and_slots() -> None:
    r = parsers.parse_llama_cpp(LLAMA_METRICS, LLAMA_SLOTS)
    assert (r.running, r.waiting, r.note) == (1, 2, "")


def test_tgi_metrics_and_info() -> None:
    r = parsers.parse_tgi(TGI_METRICS, TGI_INFO)
    assert (r.running, r.waiting, r.tokens_total) == (9, 6, 16000)
    assert r.kv_cache_usage == pytest.approx(0.75)
    assert r.model == "bigscience/bloom-560m"


def test_ollama_ps_and_runner_matching_by_digest() -> None:
    r = parsers.parse_ollama(ollama_ps())
    (m,) = r.models
    assert (m.name, m.context_length, m.size_vram_bytes) == ("llama3.2:3b", 8192, 3_400_000_000)
    runner_new = ["/usr/lib/ollama/llama-server", "--model",
                  f"/root/.ollama/models/blobs/sha256-{DIGEST}", "--port", "41234"]  # fmt: skip
    runner_old = ["ollama", "runner", f"--model=/m/blobs/sha256-{DIGEST}", "--port", "5"]
    other = ["ollama", "runner", "--model", "/m/blobs/sha256-" + "0" * 64]
    assert list(parsers.ollama_for_runner(r.models, runner_new)) == [m]
    assert list(parsers.ollama_for_runner(r.models, runner_old)) == [m]
    assert list(parsers.ollama_for_runner(r.models, other)) == []


@pytest.mark.parametrize(
    ("kind", "body", "note"),
    [
        ("vLLM", "<html><body>Welcome</body></html>", "malformed metrics"),
        ("vLLM", "# TYPE x gauge\nnode_load1 0.5\n", "no vllm: metrics"),
        ("vLLM", 'vllm:kv_cache_usage_perc{model_name="x} 0.5\n', "malformed metrics"),
        ("vLLM", "vllm:kv_cache_usage_perc abc\n", "malformed metrics"),
        ("SGLang", VLLM_NEW.replace("PREEMPT", "1"), "no sglang: metrics"),
        ("Ollama", "<html></html>", "not JSON"),
        ("Ollama", json.dumps({"models": "x"}), "no models list"),
        ("llama.cpp", None, "neither /metrics nor /slots"),
    ],
)
def test_unexpected_bodies_become_a_note(kind: str, body: str | None, note: str) -> None:
    path = parsers.ENDPOINTS[kind][0]
    with pytest.raises(Unexpected, match=note):
        parsers.parse(kind, {path: body})


def test_a_lying_usage_figure_is_dropped() -> None:
    r = parsers.parse_vllm(VLLM_OLD.replace("0.17", "7.5"))
    assert r.kv_cache_usage is None
    assert r.running == 2


def test_labels_are_sanitised() -> None:
    text = 'vllm:num_requests_running{model_name="evil\\u001b[31m\x1b[2Jname"} 1\n'
    r = parsers.parse_vllm(text)
    assert "\x1b" not in r.model
