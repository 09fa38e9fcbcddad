"""Every output carries what vramtop concluded: ``--once --json``, ``vramtop record`` (CSV and
NDJSON) and the live monitor's ``--export-csv`` / ``--json-stream FILE`` hold the enricher's
facts (framework, container, model files) and the analyzer's phase, rate, verdict and OOM ETA,
each sample with the analysis of that very sample."""

from __future__ import annotations

import csv
import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
from tui import Tui

from vramtop.actors.base import ActorContext
from vramtop.actors.exporter import ExporterCore
from vramtop.actors.mailbox import Mailbox
from vramtop.analysis.model import AnalysisResult, GpuAnalysis, ProcessAnalysis, Trend
from vramtop.config import Config
from vramtop.enrich.model import Container, Enrichment
from vramtop.export.csvlog import COLUMNS
from vramtop.export.document import schema_text
from vramtop.gpu.simulated import SimulatedBackend
from vramtop.messages import (
    AnalysisMessage,
    EnrichmentMessage,
    ProcessIdentity,
    ProcessRow,
    SampleMessage,
)

VRAMTOP = [sys.executable, "-m", "vramtop"]
SCHEMA = json.loads(schema_text())
LEAK = ["--demo", "leak", "--speed", "5", "--refresh-rate", "0.5"]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == list(COLUMNS)
    return rows


def by_sample(rows: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        out.setdefault(r["timestamp"], []).append(r)
    return list(out.values())


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


# -- --once --json -----------------------------------------------------------------------------


def test_demo_once_json_names_the_framework_and_has_no_invented_history() -> None:
    out = subprocess.run(
        [*VRAMTOP, "--demo", "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    procs = {p["command"]: p for g in doc["gpus"] for p in g["processes"] if p["command"]}
    vllm = procs["VLLM::EngineCore"]
    assert vllm["framework"] == "vLLM"
    assert vllm["preallocates"] is True  # a vLLM server reserves its pool by design
    # Its parent, the demo's API server, was asked over loopback HTTP for its KV cache.
    server = vllm["server"]
    assert server["kind"] == "vLLM" and server["url"].startswith("http://127.0.0.1:")
    assert server["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert 0.0 <= server["kv_cache_usage"] <= 1.0 and server["note"] == ""
    assert all(p["server"] is None for c, p in procs.items() if c.startswith("python train"))
    assert next(p for c, p in procs.items() if c == "ollama serve")["framework"] == "Ollama"
    # One sample: no trend can be known yet, and none is made up.
    for gpu in doc["gpus"]:
        assert gpu["analysis"]["phase"] == "unknown"
        assert gpu["analysis"]["rate_mib_s"] is None
        for p in gpu["processes"]:
            assert p["analysis"]["phase"] == "unknown"
            assert p["analysis"]["verdict"] == "OK"


# -- vramtop record ----------------------------------------------------------------------------


def test_record_of_a_leak_carries_phase_verdict_and_an_eta_before_the_oom(tmp_path: Path) -> None:
    paths = {"csv": tmp_path / "leak.csv", "ndjson": tmp_path / "leak.ndjson"}
    procs = [  # both at once: half the waiting
        subprocess.Popen(
            [*VRAMTOP, "record", str(path), *LEAK, "--count", "20"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in paths.values()
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err

    samples = by_sample(csv_rows(paths["csv"]))
    assert len(samples) == 20
    leaky = [next((r for r in s if r["command"] == "python leaky.py"), None) for s in samples]
    assert leaky[0] is not None and leaky[-1] is None, "the leak is OOM-killed within the run"
    alive = [r for r in leaky if r is not None]
    assert alive[0]["phase"] == "unknown" and alive[0]["rate_mib_s"] == ""
    later = alive[len(alive) // 2 :]
    assert all(r["phase"] and r["verdict"] for r in later)
    assert any(r["phase"] == "growing" and float(r["rate_mib_s"]) > 0 for r in later)
    # Warned while the process was still there, counting down towards the OOM.
    etas = [float(r["oom_eta_s"]) for r in alive if r["oom_eta_s"]]
    assert etas and etas[-1] < etas[0]
    steady = [r for s in samples for r in s if r["command"] == "python steady.py"]
    assert steady[-1]["phase"] == "stable" and steady[-1]["verdict"] == "OK"

    docs = [json.loads(line) for line in paths["ndjson"].read_text().splitlines()]
    assert len(docs) == 20
    for doc in docs:
        jsonschema.validate(doc, SCHEMA)
    last = docs[-1]["gpus"][0]
    assert last["analysis"]["phase"] in ("growing", "shrinking", "volatile", "stable")
    assert all(p["analysis"]["verdict"] for p in last["processes"])


# -- the live monitor ----------------------------------------------------------------------------


def test_live_export_writes_each_sample_with_its_analysis(tmp_path: Path) -> None:
    (tmp_path / ".config").mkdir()
    path, stream = tmp_path / "live.csv", tmp_path / "live.ndjson"

    def analysed_samples() -> int:
        if not path.exists():
            return 0
        text = path.read_text()
        if not text.endswith("\n"):
            return 0
        rows = [r for r in csv_rows(path) if r["command"] == "python leaky.py"]
        return sum(1 for r in rows if r["phase"] not in ("", "unknown"))

    tui = Tui([*LEAK, "--export-csv", str(path), "--json-stream", str(stream)], home=tmp_path)
    try:
        tui.wait_for("python leaky.py")
        wait_until(lambda: analysed_samples() >= 3)
        tui.send("q")
        assert tui.wait_exit() == 0
    finally:
        tui.close()
    samples = by_sample(csv_rows(path))
    stamps = [float(s[0]["timestamp"]) for s in samples]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "in order, none twice"
    assert all(len(s) == 3 for s in samples[:-1] if any(r["pid"] for r in s[1:]))
    procs = [r for s in samples for r in s if r["row"] == "process"]
    # Each sample waits for its own analysis: (nearly) every process row has a verdict.
    judged = [r for r in procs if r["verdict"]]
    assert len(judged) >= len(procs) // 2
    assert any(r["phase"] == "growing" for r in judged if r["command"] == "python leaky.py")
    docs = [json.loads(line) for line in stream.read_text().splitlines()]
    assert len(docs) >= len(samples) - 1  # the two files are written side by side
    for doc in docs:
        jsonschema.validate(doc, SCHEMA)
    assert any(p["analysis"] for d in docs for g in d["gpus"] for p in g["processes"])


# -- the exporter's core, in process -----------------------------------------------------------


def _snapshots(n: int) -> list[SampleMessage]:
    now = [1_700_000_000.0]
    backend = SimulatedBackend("small", t0=now[0], clock=lambda: now[0], real_children=False)
    backend.open()
    out = []
    for seq in range(1, n + 1):
        snap = backend.sample()
        rows = tuple(
            ProcessRow(ProcessIdentity(p.pid, 1.5), p.gpu_index, -1, "u", f"cmd{p.pid}", True)
            for p in snap.processes
        )
        out.append(SampleMessage(seq, snap, rows))
        now[0] += 1.0
    backend.close()
    return out


def _result(message: SampleMessage, verdict: str) -> AnalysisResult:
    trend = Trend("growing", 12.5)
    procs = tuple(
        ProcessAnalysis(r.identity, r.gpu_index, trend, verdict, "because") for r in message.rows
    )
    return AnalysisResult(message.snapshot.timestamp, (GpuAnalysis(0, trend),), procs)


def test_exporter_joins_by_seq_keeps_order_and_never_drops(tmp_path: Path) -> None:
    now = [100.0]
    core = ExporterCore(str(tmp_path / "x.csv"), wait_s=1.0, clock=lambda: now[0])
    mp = multiprocessing.get_context("fork")
    box = Mailbox(mp, "exporter")
    assert core.start(ActorContext("exporter", Config(), box, box, {}, "unused")) == []
    s1, s2, s3, s4 = _snapshots(4)
    ident = s1.rows[0].identity
    docker = Container("docker", "ab" * 32)
    facts = Enrichment(ident, 1000, "u", True, framework="PyTorch", container=docker)
    core.handle([EnrichmentMessage((facts,))], now[0])
    core.handle([s1], now[0])
    core.handle([s2], now[0])
    assert core.written == 0, "a sample waits for its analysis"
    core.handle([AnalysisMessage(1, _result(s1, "TIGHT"))], now[0])
    assert core.written == 1
    # Sample 2's analysis never comes; sample 3's does: 2 is written (with the last one), then 3.
    core.handle([s3], now[0])
    core.handle([AnalysisMessage(3, _result(s3, "OK"))], now[0])
    assert core.written == 3
    # Sample 4's analysis is late beyond one interval: written without waiting for it.
    core.handle([s4], now[0])
    now[0] += 0.5
    core.tick(now[0])
    assert core.written == 3
    now[0] += 0.6
    core.tick(now[0])
    assert core.written == 4
    core.handle([AnalysisMessage(4, _result(s4, "OOM risk"))], now[0])  # too late: ignored
    core.stop()
    box.close()

    samples = by_sample(csv_rows(tmp_path / "x.csv"))
    assert [float(s[0]["timestamp"]) for s in samples] == [
        m.snapshot.timestamp for m in (s1, s2, s3, s4)
    ]
    verdicts = [{r["verdict"] for r in s if r["row"] == "process"} for s in samples]
    # Samples 2 and 4 never got their own analysis: each is written with the newest earlier one,
    # the verdict the screen showed beside it then.
    assert verdicts == [{"TIGHT"}, {"TIGHT"}, {"OK"}, {"OK"}]
    first = next(r for r in samples[0] if r["pid"] == str(ident.pid))
    assert first["framework"] == "PyTorch" and first["container"] == "docker:" + "ab" * 6
    assert first["phase"] == "growing" and float(first["rate_mib_s"]) == 12.5
    assert samples[0][0]["row"] == "gpu" and samples[0][0]["phase"] == "growing"


def test_exporter_writes_what_it_holds_when_stopped(tmp_path: Path) -> None:
    core = ExporterCore(None, str(tmp_path / "x.ndjson"), wait_s=60.0)
    mp = multiprocessing.get_context("fork")
    box = Mailbox(mp, "exporter")
    core.start(ActorContext("exporter", Config(), box, box, {}, "unused"))
    messages = _snapshots(3)
    for m in messages:
        core.handle([m], 0.0)
    assert core.written == 0
    core.stop()
    box.close()
    docs = [json.loads(line) for line in (tmp_path / "x.ndjson").read_text().splitlines()]
    assert [d["timestamp"] for d in docs] == [m.snapshot.timestamp for m in messages]
    for doc in docs:
        jsonschema.validate(doc, SCHEMA)


def test_record_of_the_demo_carries_the_fake_servers_kv_cache(tmp_path: Path) -> None:
    path = tmp_path / "demo.csv"
    done = subprocess.run(
        [*VRAMTOP, "record", str(path), "--demo", "--count", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    rows = [r for r in csv_rows(path) if r["row"] == "process"]
    engine = [r for r in rows if r["command"] == "VLLM::EngineCore"]
    assert len(engine) == 2
    assert all(0.0 <= float(r["kv_cache_usage"]) <= 1.0 and r["requests_waiting"] for r in engine)
    assert all(r["kv_cache_usage"] == "" for r in rows if r["command"].startswith("python"))
