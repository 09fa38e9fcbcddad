"""Inference servers' figures in the ``--once --json`` document, on the right rows: each server
shape as a real process tree with a real HTTP listener on 127.0.0.1, read through the same path
``vramtop --once`` takes (the enricher, one scrape round, ``to_document``), validated against
the schema. (The demo's fake vLLM server is checked through the real command line in
``test_outputs.py``.)"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import jsonschema
import pytest
from scrape_helpers import (
    DIGEST,
    LLAMA_SLOTS,
    SGLANG_NEW,
    TGI_INFO,
    TGI_METRICS,
    VLLM_NEW,
    identity,
    node,
    ollama_ps,
    process_tree,
    route,
)

from vramtop.config import Config, ScrapingConfig
from vramtop.enrich.enricher import Enricher
from vramtop.export.csvlog import HEADER_LINE as HEADER
from vramtop.export.document import schema_text, to_document
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.modes.once import scrape_once

SCHEMA = json.loads(schema_text())
GiB = 1 << 30
JSON = "application/json"


def once_document(gpu_pids: list[int], ports: list[int], enable: bool = True) -> dict[str, Any]:
    gpus = tuple(GpuSample(i, f"GPU-{i}", "NVIDIA H100", memory_total=80 * GiB) for i in range(4))
    procs = tuple(ProcessSample(pid, i, used_bytes=70 * GiB) for i, pid in enumerate(gpu_pids))
    snap = Snapshot(time.time(), "simulated", gpus, procs)
    rows = [
        ProcessRow(identity(p.pid), p.gpu_index, i, "root", "", True) for i, p in enumerate(procs)
    ]
    enricher = Enricher()
    enricher.update(rows)
    scraping = ScrapingConfig(enable=enable, allowed_ports=tuple(ports), timeout_ms=2000)
    config = dataclasses.replace(Config(), scraping=scraping)
    servers = scrape_once(snap, rows, enricher.known, config)
    doc = to_document(snap, rows, enricher.known, None, None, servers)
    jsonschema.validate(doc, SCHEMA)
    return doc


def by_pid(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["pid"]: p for g in doc["gpus"] for p in g["processes"]}


def test_vllm_tp_ranks_and_an_unrelated_process() -> None:
    workers = [node(f"tp{i}", f"VLLM::Worker_TP{i}") for i in range(2)]
    spec = node(
        "api", "vllm serve meta-llama/Llama-3.1-8B-Instruct --port {port}", port=0,
        routes={"/metrics": route(VLLM_NEW.replace("PREEMPT", "2"))},
        children=[node("engine", "VLLM::EngineCore", children=workers)],
    )  # fmt: skip
    with (
        process_tree(spec) as tree,
        process_tree(node("train", "python train.py --epochs 3")) as other,
    ):
        doc = once_document([tree.pid("tp0"), tree.pid("tp1"), other.pid("train")],
                            [tree.port("api")])  # fmt: skip
    rows = by_pid(doc)
    for rank in ("tp0", "tp1"):
        server = rows[tree.pid(rank)]["server"]
        assert server["kind"] == "vLLM" and server["kv_cache_usage"] == pytest.approx(0.42)
        assert (server["running"], server["waiting"], server["shared"]) == (7, 3, True)
        assert server["url"] == f"http://127.0.0.1:{tree.port('api')}/metrics"
        assert server["server_pid"] == tree.pid("api")
    assert rows[other.pid("train")]["server"] is None


def test_sglang_scheduler_under_the_launcher() -> None:
    spec = node(
        "main", "python -m sglang.launch_server --model-path Qwen/Qwen3-8B --enable-metrics "
        "--port {port}", port=0, routes={"/metrics": route(SGLANG_NEW)},
        children=[node("sched", "sglang::scheduler_TP0"), node("detok", "sglang::detokenizer")],
    )  # fmt: skip
    with process_tree(spec) as tree:
        doc = once_document([tree.pid("sched")], [tree.port("main")])
    server = by_pid(doc)[tree.pid("sched")]["server"]
    assert (server["kind"], server["model"]) == ("SGLang", "Qwen/Qwen3-8B")
    assert server["kv_cache_usage"] == pytest.approx(0.61)
    assert (server["running"], server["waiting"], server["tokens_total"]) == (12, 5, 480000)


def test_tgi_shard_with_its_sibling_router() -> None:
    spec = node(
        "launcher", "text-generation-launcher --model-id bigscience/bloom-560m",
        children=[
            node("router", "text-generation-router --port {port}", port=0,
                 routes={"/metrics": route(TGI_METRICS), "/info": route(TGI_INFO, ctype=JSON)}),
            node("shard", "text-generation-server serve bigscience/bloom-560m"),
        ],
    )  # fmt: skip
    with process_tree(spec) as tree:
        doc = once_document([tree.pid("shard")], [tree.port("router")])
    server = by_pid(doc)[tree.pid("shard")]["server"]
    assert (server["kind"], server["model"], server["waiting"]) == (
        "TGI",
        "bigscience/bloom-560m",
        6,
    )


@pytest.mark.parametrize("style", ["llama-server", "ollama runner"])
def test_ollama_runner(style: str) -> None:
    blob = f"/root/.ollama/models/blobs/sha256-{DIGEST}"
    runner = (
        f"/usr/lib/ollama/llama-server --model {blob} --port {{port}} --host 127.0.0.1"
        if style == "llama-server"
        else f"/usr/bin/ollama runner --model {blob} --port {{port}}"
    )
    spec = node(
        "serve", "/usr/bin/ollama serve", port=0,
        routes={"/api/ps": route(ollama_ps(), ctype=JSON)},
        children=[node("runner", runner, port=0)],
    )  # fmt: skip
    with process_tree(spec) as tree:
        doc = once_document([tree.pid("runner")], [tree.port("serve")])
    server = by_pid(doc)[tree.pid("runner")]["server"]
    assert (server["kind"], server["model"], server["tokens_total"]) == (
        "Ollama",
        "llama3.2:3b",
        8192,
    )


def test_llama_cpp_with_slots_only() -> None:
    spec = node(
        "server", "llama-server -m /models/q4.gguf --port {port}", port=0,
        routes={"/slots": route(LLAMA_SLOTS, ctype=JSON)},
    )  # fmt: skip
    with process_tree(spec) as tree:
        doc = once_document([tree.pid("server")], [tree.port("server")])
    server = by_pid(doc)[tree.pid("server")]["server"]
    assert server["kind"] == "llama.cpp" and server["running"] == 1
    assert server["kv_cache_usage"] == pytest.approx((900 + 124) / 8192)
    assert "--metrics" in server["note"]


def test_scraping_off_gives_null_servers() -> None:
    spec = node(
        "server", "llama-server -m /models/q4.gguf --port {port}", port=0,
        routes={"/slots": route(LLAMA_SLOTS, ctype=JSON)},
    )  # fmt: skip
    with process_tree(spec) as tree:
        doc = once_document([tree.pid("server")], [tree.port("server")], enable=False)
    assert by_pid(doc)[tree.pid("server")]["server"] is None


def test_csv_row_carries_kv_cache_usage_and_waiting() -> None:
    import csv
    import io

    from vramtop.export.csvlog import format_sample
    from vramtop.scrape.model import ServerMetrics

    ident = ProcessIdentity(4321, 1000.0)
    snap = Snapshot(time.time(), "simulated", (GpuSample(0, "GPU-0", "H100"),),
                    (ProcessSample(4321, 0, used_bytes=GiB), ProcessSample(4322, 0)))  # fmt: skip
    rows = [ProcessRow(ident, 0, 0, "u", "VLLM::EngineCore", True),
            ProcessRow(ProcessIdentity(4322, 1.0), 0, 1, "u", "python x.py", True)]  # fmt: skip
    server = ServerMetrics("vLLM", "http://127.0.0.1:8000/metrics", (ident,),
                           kv_cache_usage=0.5, waiting=4, read_at=1.0)  # fmt: skip
    text = format_sample(snap, rows, servers={ident: server}).decode()
    got = {r["pid"]: r for r in csv.DictReader(io.StringIO(HEADER + "\n" + text))}
    assert (got["4321"]["kv_cache_usage"], got["4321"]["requests_waiting"]) == ("0.5", "4")
    assert (got["4322"]["kv_cache_usage"], got["4322"]["requests_waiting"]) == ("", "")
