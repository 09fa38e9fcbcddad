"""The scraper core over real process trees with real HTTP listeners on 127.0.0.1: the figures
reach the right GPU processes, never another server's, and every refusal leaves a note.

Shapes (as the servers build them): vLLM's API server above ``VLLM::EngineCore`` above TP
workers; TGI's router as the shard's sibling; Ollama's runner on a random port under ``ollama
serve``; a llama.cpp router whose per-model child listens on a random port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path

import pytest
from scrape_helpers import (
    DIGEST,
    LLAMA_SLOTS,
    TGI_INFO,
    TGI_METRICS,
    VLLM_NEW,
    VLLM_OLD,
    hostile_tree,
    identity,
    node,
    ollama_ps,
    process_tree,
    route,
    sample,
    thread_server,
)

from vramtop.config import Config, ScrapingConfig
from vramtop.enrich.model import Enrichment
from vramtop.enrich.procfs import RecordingProcFS
from vramtop.messages import (
    ConfigUpdate,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRow,
    ProcessRows,
    ScrapeMessage,
)
from vramtop.scrape.core import ScraperCore
from vramtop.scrape.model import ServerMetrics

JSON = "application/json"


def core_for(ports: list[int], **kw: object) -> ScraperCore:
    scraping = ScrapingConfig(allowed_ports=tuple(ports), timeout_ms=1000, **kw)  # type: ignore[arg-type]
    return ScraperCore(dataclasses.replace(Config(), scraping=scraping))


def one_round(core: ScraperCore, *gpu_pids: tuple[int, int]) -> ScrapeMessage:
    core.handle([sample(*gpu_pids)], 0.0)
    _next, out = core.tick(0.0)
    assert {dest for dest, _ in out} == {"render", "analyzer", "exporter", "metrics"}
    message = out[0][1]
    assert isinstance(message, ScrapeMessage)
    return message


def for_pid(message: ScrapeMessage, pid: int) -> ServerMetrics:
    (server,) = [s for s in message.servers if any(p.pid == pid for p in s.processes)]
    return server


def vllm_tree(body: str = VLLM_NEW.replace("PREEMPT", "5"), port: object = 0) -> dict[str, object]:
    workers = [node(f"tp{i}", f"VLLM::Worker_TP{i}") for i in range(2)]
    engine = node("engine", "VLLM::EngineCore", children=workers)
    return node(
        "api",
        "vllm serve meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 2 --port {port}",
        port=port,
        routes={"/metrics": route(body)},
        children=[engine],
    )


def test_every_tp_rank_of_one_vllm_server_shows_the_servers_figures() -> None:
    with process_tree(vllm_tree()) as tree:
        core = core_for([tree.port("api")])
        msg = one_round(core, (tree.pid("tp0"), 0), (tree.pid("tp1"), 1))
    (server,) = msg.servers
    assert {p.pid for p in server.processes} == {tree.pid("tp0"), tree.pid("tp1")}
    assert server.shared and server.server_pid == tree.pid("api")
    assert server.kind == "vLLM" and server.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert server.kv_cache_usage == pytest.approx(0.42)
    assert (server.running, server.waiting, server.tokens_total) == (7, 3, 2048 * 16)
    assert server.url == f"http://127.0.0.1:{tree.port('api')}/metrics"
    assert server.read_at > 0 and server.note == ""


def test_engine_core_at_tp1_under_the_api_server() -> None:
    spec = node(
        "api", "vllm serve Qwen/Qwen2.5-7B --port {port}", port=0,
        routes={"/metrics": route(VLLM_OLD)}, children=[node("engine", "VLLM::EngineCore")],
    )  # fmt: skip
    with process_tree(spec) as tree:
        msg = one_round(core_for([tree.port("api")]), (tree.pid("engine"), 0))
    server = for_pid(msg, tree.pid("engine"))
    assert server.kv_cache_usage == pytest.approx(0.17) and not server.shared


def test_two_servers_on_one_machine_never_mix() -> None:
    with (
        process_tree(vllm_tree()) as a,
        process_tree(
            node("api", "vllm serve Qwen/Qwen2.5-7B --port {port}", port=0,
                 routes={"/metrics": route(VLLM_OLD)},
                 children=[node("engine", "VLLM::EngineCore")])
        ) as b,
    ):  # fmt: skip
        core = core_for([a.port("api"), b.port("api")])
        msg = one_round(core, (a.pid("tp0"), 0), (a.pid("tp1"), 1), (b.pid("engine"), 2))
    assert for_pid(msg, a.pid("tp0")).kv_cache_usage == pytest.approx(0.42)
    assert for_pid(msg, a.pid("tp1")).model == "meta-llama/Llama-3.1-8B-Instruct"
    assert for_pid(msg, b.pid("engine")).kv_cache_usage == pytest.approx(0.17)
    assert for_pid(msg, b.pid("engine")).model == "Qwen/Qwen2.5-7B"


def test_tgi_router_is_the_shards_sibling() -> None:
    spec = node(
        "launcher", "text-generation-launcher --model-id bigscience/bloom-560m",
        children=[
            node("router", "text-generation-router --port {port}", port=0,
                 routes={"/metrics": route(TGI_METRICS), "/info": route(TGI_INFO, ctype=JSON)}),
            node("shard", "text-generation-server serve bigscience/bloom-560m"),
        ],
    )  # fmt: skip
    with process_tree(spec) as tree:
        msg = one_round(core_for([tree.port("router")]), (tree.pid("shard"), 0))
    server = for_pid(msg, tree.pid("shard"))
    assert server.server_pid == tree.pid("router")
    assert (server.kind, server.model) == ("TGI", "bigscience/bloom-560m")
    assert (server.waiting, server.running) == (6, 9)
    assert server.kv_cache_usage == pytest.approx(0.75)


@pytest.mark.parametrize("style", ["llama-server", "ollama runner"])
def test_ollama_runner_on_a_random_port_gets_its_models_figures(style: str) -> None:
    blob = f"/root/.ollama/models/blobs/sha256-{DIGEST}"
    runner = (
        f"/usr/lib/ollama/llama-server --model {blob} --port {{port}} --host 127.0.0.1"
        if style == "llama-server"
        else f"/usr/bin/ollama runner --model {blob} --port {{port}}"
    )
    spec = node(
        "serve", "/usr/bin/ollama serve", port=0,
        routes={"/api/ps": route(ollama_ps(), ctype="application/json")},
        children=[node("runner", runner, port=0, routes={"/health": route("{}")})],
    )  # fmt: skip
    with process_tree(spec) as tree:
        msg = one_round(core_for([tree.port("serve")]), (tree.pid("runner"), 0))
    server = for_pid(msg, tree.pid("runner"))
    assert server.kind == "Ollama" and server.model == "llama3.2:3b"
    assert server.tokens_total == 8192
    assert server.url == f"http://127.0.0.1:{tree.port('serve')}/api/ps"


def test_llama_cpp_router_child_is_read_on_its_own_random_port() -> None:
    spec = node(
        "router", "llama-server --models-dir /models --port {port}", port=0,
        routes={"/slots": route("[]", ctype="application/json")},
        children=[node("child", "llama-server -m /models/a.gguf --port {port}", port=0,
                       routes={"/slots": route(LLAMA_SLOTS, ctype="application/json")})],
    )  # fmt: skip
    with process_tree(spec) as tree:
        # Only the router's port is allowed: the child's comes from its own command line.
        msg = one_round(core_for([tree.port("router")]), (tree.pid("child"), 0))
    server = for_pid(msg, tree.pid("child"))
    assert server.url == f"http://127.0.0.1:{tree.port('child')}/metrics"
    assert server.kind == "llama.cpp" and server.running == 1 and server.tokens_total == 8192
    assert "--metrics" in server.note


def test_a_port_not_in_the_allowed_list_is_not_read() -> None:
    with process_tree(vllm_tree()) as tree:
        msg = one_round(core_for([tree.port("api") + 1]), (tree.pid("tp0"), 0))
    server = for_pid(msg, tree.pid("tp0"))
    assert server.url == "" and server.kv_cache_usage is None
    assert server.note.startswith("no listening socket on an allowed port")


def test_a_listener_of_an_unrelated_process_on_an_allowed_port_is_not_read() -> None:
    body = VLLM_NEW.replace("PREEMPT", "0")
    spec = node("engine", "VLLM::EngineCore")  # a GPU process whose tree listens nowhere
    with (
        thread_server({"/metrics": ("ok", 200, "text/plain", body)}) as unrelated,
        process_tree(spec) as tree,
    ):
        msg = one_round(core_for([unrelated.port]), (tree.pid("engine"), 0))
        assert unrelated.connections == 0
    server = for_pid(msg, tree.pid("engine"))
    assert server.note == (
        f"port {unrelated.port} listens, but not from this server's process tree: not read"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process of another UID")
def test_a_listener_of_another_uid_in_the_tree_is_not_read() -> None:
    spec = node(
        "api", "vllm serve m",
        children=[
            node("intruder", "vllm serve m --port {port}", port=0, uid=65534,
                 routes={"/metrics": route(VLLM_OLD)}),
            node("engine", "VLLM::EngineCore"),
        ],
    )  # fmt: skip
    with process_tree(spec) as tree:
        msg = one_round(core_for([tree.port("intruder")]), (tree.pid("engine"), 0))
    server = for_pid(msg, tree.pid("engine"))
    assert server.url == "" and server.kv_cache_usage is None
    assert server.note == (
        f"port {tree.port('intruder')} is held by PID {tree.pid('intruder')} of UID 65534: not read"
    )


def test_another_users_server_is_not_read_when_not_root() -> None:
    with process_tree(vllm_tree()) as tree:
        core = core_for([tree.port("api")])
        core.my_uid = 12345  # vramtop as an ordinary user; the tree runs as someone else
        # The enricher knows the framework (it may, as root); the scraper still refuses.
        hint = Enrichment(identity(tree.pid("tp0")), 0, "root", False, framework="vLLM")
        core.handle([EnrichmentMessage((hint,))], 0.0)
        msg = one_round(core, (tree.pid("tp0"), 0))
    assert for_pid(msg, tree.pid("tp0")).note == "another user's server: not read (security model)"


@pytest.mark.parametrize(
    ("mode", "note"),
    [
        ("redirect", "/metrics: redirect refused (302 to http://example.com/metrics)"),
        ("huge", "/metrics: body over 64 KiB: connection dropped"),
        ("trickle", "/metrics: timed out after 1000 ms"),
        ("html", "malformed metrics"),
        ("malformed", "malformed metrics"),
    ],
)
def test_hostile_servers_leave_a_note_and_no_figures(mode: str, note: str, tmp_path: Path) -> None:
    count = tmp_path / "connections"
    with hostile_tree(mode, str(count)) as tree:
        core = core_for([tree.port("api")])
        msg = one_round(core, (tree.pid("engine"), 0))
        server = for_pid(msg, tree.pid("engine"))
        assert server.note.startswith(note), server.note
        assert server.kv_cache_usage is None and server.running is None
        # The rate limit: a second round right away asks nobody.
        core.next_round = 0.0
        core.tick(1.0)
        assert count.read_text() == "x"


def test_rate_limit_and_preemption_rate(tmp_path: Path) -> None:
    count = tmp_path / "connections"
    with hostile_tree("ok", str(count)) as tree:
        core = core_for([tree.port("api")], rate_limit_seconds=5.0)
        core.handle([sample((tree.pid("engine"), 0))], 0.0)
        nxt, out = core.tick(0.0)
        assert nxt == 5.0
        assert core.tick(4.9) == (5.0, [])  # nothing before the next round
        _nxt, out = core.tick(5.0)
        assert count.read_text() == "xx"
    server = for_pid(out[0][1], tree.pid("engine"))  # type: ignore[arg-type]
    assert server.preemptions_per_s == 0.0  # the counter stood still between the two reads


def test_scraping_disabled_opens_no_socket_and_reads_no_socket_table(tmp_path: Path) -> None:
    count = tmp_path / "connections"
    count.write_text("")
    with hostile_tree("ok", str(count)) as tree:
        proc = RecordingProcFS()
        cfg = dataclasses.replace(
            Config(), scraping=ScrapingConfig(enable=False, allowed_ports=(tree.port("api"),))
        )
        core = ScraperCore(cfg, procfs=proc)
        core.handle([sample((tree.pid("engine"), 0))], 0.0)
        for t in range(5):
            assert core.tick(float(t) * 10)[1] == []
    assert count.read_text() == ""
    assert not any("/net/tcp" in p for p in proc.accessed)
    assert not any(p.endswith("/fd") for p in proc.accessed)


def test_figures_follow_identity_not_pid() -> None:
    with process_tree(vllm_tree()) as tree:
        msg = one_round(core_for([tree.port("api")]), (tree.pid("tp0"), 0))
    assert for_pid(msg, tree.pid("tp0")).processes[0] == identity(tree.pid("tp0"))


def test_a_round_among_stalling_servers_ends_in_bounded_time(tmp_path: Path) -> None:
    """Five servers that trickle: a round stops reading after 4 x timeout_ms (at least 1 s), so
    the actor keeps answering its inbox; the server left out is read first next round."""
    with contextlib.ExitStack() as stack:
        trees = [
            stack.enter_context(hostile_tree("trickle", str(tmp_path / f"c{i}"))) for i in range(5)
        ]
        scraping = ScrapingConfig(allowed_ports=tuple(t.port("api") for t in trees), timeout_ms=250)
        core = ScraperCore(dataclasses.replace(Config(), scraping=scraping))
        core.handle([sample(*((t.pid("engine"), i) for i, t in enumerate(trees)))], 0.0)
        started = time.monotonic()
        _next, out = core.tick(0.0)
        took = time.monotonic() - started
        notes = [s.note for s in out[0][1].servers]  # type: ignore[attr-defined]
        assert notes.count("not read yet") >= 1
        assert sum(n.endswith("timed out after 250 ms") for n in notes) >= 3
        # 1 s of budget, the request under way when it ran out, and slack for a busy machine.
        assert took < 3.0
        _next, out = core.tick(5.0)
        notes = [s.note for s in out[0][1].servers]  # type: ignore[attr-defined]
        assert "not read yet" not in notes


def test_a_metrics_page_over_64_kib_is_read_from_its_first_part(tmp_path: Path) -> None:
    with hostile_tree("big", str(tmp_path / "c")) as tree:
        msg = one_round(core_for([tree.port("api")]), (tree.pid("engine"), 0))
    server = for_pid(msg, tree.pid("engine"))
    assert server.kv_cache_usage == pytest.approx(0.42) and server.waiting == 3
    assert server.note == (
        "/metrics: body over 64 KiB: connection dropped; figures from the first part"
    )


def test_a_reused_pid_is_not_given_the_new_processes_server() -> None:
    with process_tree(vllm_tree()) as tree:
        core = core_for([tree.port("api")])
        real = identity(tree.pid("tp0"))
        stale = ProcessIdentity(real.pid, real.start_time - 3600.0)  # an earlier owner of the PID
        core.handle([ProcessRows(1, 0.0, (ProcessRow(stale, 0, 0, "root", "", True),))], 0.0)
        _next, out = core.tick(0.0)
    assert out[0][1].servers == ()  # type: ignore[attr-defined]


def test_tgi_with_a_separate_prometheus_port_is_found_by_trying_the_next_listener() -> None:
    # TGI 3.3+: the router's API port answers /metrics with 404; its metrics port answers it.
    metrics = node(
        "metrics",
        "text-generation-router --prometheus-port {port}",
        port=0,
        routes={"/metrics": route(TGI_METRICS), "/info": route(TGI_INFO, ctype=JSON)},
    )
    spec = node(
        "launcher", "text-generation-launcher --model-id bigscience/bloom-560m",
        children=[
            node("router", "text-generation-router --port {port}", port=0, children=[metrics]),
            node("shard", "text-generation-server serve bigscience/bloom-560m"),
        ],
    )  # fmt: skip
    with process_tree(spec) as tree:
        core = core_for([tree.port("router"), tree.port("metrics")])
        msg = one_round(core, (tree.pid("shard"), 0))
    server = for_pid(msg, tree.pid("shard"))
    assert server.url == f"http://127.0.0.1:{tree.port('metrics')}/metrics"
    assert (server.waiting, server.model) == (6, "bigscience/bloom-560m")


def test_switching_scraping_off_by_a_reload_withdraws_the_figures(tmp_path: Path) -> None:
    count = tmp_path / "connections"
    with hostile_tree("ok", str(count)) as tree:
        core = core_for([tree.port("api")])
        msg = one_round(core, (tree.pid("engine"), 0))
        assert msg.servers and count.read_text() == "x"
        off = dataclasses.replace(core.config, scraping=ScrapingConfig(enable=False))
        core.handle([ConfigUpdate(off)], 1.0)
        _next, out = core.tick(1.0)
        assert [m for _, m in out] == [ScrapeMessage((), core.last.at)] * 4  # type: ignore[union-attr]
        assert core.tick(10.0)[1] == []  # once
        assert count.read_text() == "x"  # and no further connection


def test_sglang_without_enable_metrics_says_how_to_get_them() -> None:
    spec = node(
        "main", "python -m sglang.launch_server --model-path m --port {port}", port=0,
        children=[node("sched", "sglang::scheduler")],
    )  # fmt: skip
    with process_tree(spec) as tree:
        msg = one_round(core_for([tree.port("main")]), (tree.pid("sched"), 0))
    note = for_pid(msg, tree.pid("sched")).note
    assert note == "/metrics: HTTP 404 (SGLang serves it only with --enable-metrics)"
