"""Deep mode end to end without a GPU: real reporter processes (``vramtop.report()`` with a
stand-in torch on their PYTHONPATH), real Unix sockets, the deep actor's core, and the render
controller showing what they said."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from deepkit import (
    ROOT,
    GiB,
    make_env,
    one_round,
    start_reporter,
    start_server,
    stats,
    write_state,
)

from vramtop.deep import protocol
from vramtop.deep.core import DeepCore
from vramtop.enrich.procinfo import ProcessTable
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessRow, SampleMessage
from vramtop.render.controller import Ui

UUID_A = "58f3aa00-1111-2222-3333-000000000000"
UUID_B = "58f3bb00-1111-2222-3333-000000000001"
NOBODY = 65534


def sample_for(pids_on_gpu: list[tuple[int, int, int]]) -> SampleMessage:
    """A sampler message for real PIDs: (pid, gpu index, NVML bytes); GPU i has UUID_A/UUID_B."""
    gpus = tuple(
        GpuSample(i, f"GPU-{u}", "NVIDIA H100", memory_total=80 * GiB, memory_used=20 * GiB,
                  memory_reserved=GiB // 2, memory_free=60 * GiB)
        for i, u in enumerate((UUID_A, UUID_B))
    )  # fmt: skip
    facts = ProcessTable().update(p for p, _, _ in pids_on_gpu)
    procs = tuple(ProcessSample(p, g, used_bytes=b) for p, g, b in pids_on_gpu)
    rows = tuple(
        ProcessRow(facts[p].identity, g, i, facts[p].user, facts[p].command, facts[p].same_user)
        for i, (p, g, _) in enumerate(pids_on_gpu)
    )
    return SampleMessage(1, Snapshot(time.time(), "simulated", gpus, procs), rows)


def screen(ui: Ui) -> str:
    return "\n".join(ui.draw(160, 60).text())


def detail_of(ui: Ui, pid: int) -> str:
    ui.state.overlay = ""
    key = next(v.key for v in ui.state.views if v.pid == pid)
    ui.state.selected = key
    ui.key("d")
    return screen(ui)


def test_import_is_light_and_report_pulls_in_nothing_heavy(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import vramtop"],
        env=env.environ(torch=False), capture_output=True, text=True, check=True,
    )  # fmt: skip
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in timed.stderr.splitlines()}
    assert "vramtop" in imported
    assert not imported & {"numpy", "psutil", "blessed", "pynvml", "torch"}
    code = (
        "import sys, vramtop; p = vramtop.report(); "
        "print(p, sorted(m for m in ('numpy', 'psutil', 'blessed', 'pynvml', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env.environ(torch=False),
                         capture_output=True, text=True, check=True)  # fmt: skip
    path, heavy = out.stdout.split(" ", 1)
    assert path.endswith(".sock") and heavy.strip() == "[]"


def test_states_other_than_data_are_said_not_zeroed(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "torch.json", [{"uuid": UUID_A, "stats": stats(GiB, 2 * GiB)}],
                        initialized=False)  # fmt: skip
    no_torch = start_reporter(env, None, "--no-torch-import", torch=False)
    not_imported = start_reporter(env, state, "--no-torch-import")
    not_initialised = start_reporter(env, state)
    try:
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        by_pid = {p.identity.pid: p for p in message.processes}
        assert by_pid[no_torch.pid].report.state == protocol.NO_TORCH  # type: ignore[union-attr]
        for r in (not_imported, not_initialised):
            report = by_pid[r.pid].report
            assert report is not None and report.state == protocol.CUDA_NOT_INITIALIZED
            assert report.devices == ()
        ui = Ui()
        ui.handle(sample_for([(no_torch.pid, 0, GiB), (not_initialised.pid, 0, GiB)]))
        ui.handle(message)
        assert "torch not installed" in detail_of(ui, no_torch.pid)
        detail = detail_of(ui, not_initialised.pid)
        assert "CUDA not initialised yet" in detail and "torch 2.3.1+fake" in detail
        assert (
            "allocated" not in detail.split("allocator (deep mode)")[1].split("inference server")[0]
        )
    finally:
        for r in (no_torch, not_imported, not_initialised):
            r.stop()
    assert not Path(str(state) + ".violations").exists()


def test_two_reporters_and_a_plain_gpu_process_are_each_attributed(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state_a = write_state(tmp_path / "a.json", [
        {"uuid": UUID_A, "stats": stats(3 * GiB, 5 * GiB), "free": 60 * GiB, "total": 80 * GiB},
    ])  # fmt: skip
    state_b = write_state(tmp_path / "b.json", [
        {"uuid": UUID_A, "stats": {}},  # CUDA index 0, never used by this process
        {"uuid": UUID_B, "stats": stats(7 * GiB, 9 * GiB), "free": 50 * GiB, "total": 80 * GiB},
    ])  # fmt: skip
    a = start_reporter(env, state_a)
    b = start_reporter(env, state_b)
    plain = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        assert sorted(p.identity.pid for p in message.processes) == sorted([a.pid, b.pid])
        ui = Ui()
        ui.handle(sample_for([(a.pid, 0, 6 * GiB), (b.pid, 1, 10 * GiB), (plain.pid, 0, GiB)]))
        ui.handle(message)
        rows = {pid: next(ln for ln in screen(ui).splitlines() if f" {pid} " in ln)
                for pid in (a.pid, b.pid, plain.pid)}  # fmt: skip
        assert "DEEP" in rows[a.pid] and "DEEP" in rows[b.pid] and "DEEP" not in rows[plain.pid]

        detail = detail_of(ui, a.pid)
        assert "allocated 3.0G  active 3.1G  reserved 5.0G" in detail
        assert "NVML sees 6.0G, PyTorch reserved 5.0G: 1.0G outside the caching allocator" in detail
        assert "2.0G reserved but not allocated" in detail
        detail = detail_of(ui, b.pid)
        assert "allocated 7.0G  active 7.1G  reserved 9.0G" in detail, "cuda:1 is NVML GPU 1"
        assert "cuda:1" in detail
        detail = detail_of(ui, plain.pid)
        assert "deep mode: not reporting" in detail and "reserved 5.0G" not in detail
    finally:
        a.stop(), b.stop()
        plain.communicate(b"")
    for state in (state_a, state_b):
        assert not Path(str(state) + ".violations").exists(), "reporting created a CUDA context"


def test_socket_named_after_another_pid_is_rejected(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [{"uuid": UUID_A, "stats": stats(GiB, GiB)}])
    liar = start_reporter(env, state)
    try:
        assert liar.path is not None
        claimed = os.getpid()  # alive, so the socket is not taken for a stale one
        os.rename(liar.path, env.sockets / f"{claimed}.sock")
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        assert message.processes == ()
        assert f"{claimed}.sock is served by PID {liar.pid}" in " ".join(message.notes)
        ui = Ui()
        ui.handle(sample_for([(claimed, 0, GiB)]))
        ui.handle(message)
        assert f"served by PID {liar.pid}" in screen(ui), "the status line says why"
        assert "DEEP" not in screen(ui)
    finally:
        liar.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="running a monitor as another user needs root")
def test_socket_of_another_uid_is_rejected(tmp_path: Path) -> None:
    """The monitor runs as nobody; in its private directory there are two sockets: one served
    by a process of nobody (accepted), one by root (rejected although its PID is right)."""
    # Under /tmp itself: pytest's own directories are closed to other users.
    sockets = Path(tempfile.mkdtemp(prefix="vramtop-test-"))
    os.chown(sockets, NOBODY, NOBODY)
    foreign = start_server("good", sockets)
    own = start_server("good", sockets, uid=NOBODY)
    # Started as root and dropped to nobody after its imports: nobody cannot read this Python.
    monitor = (
        "import json, os, sys\n"
        f"sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]\n"
        "import psutil\n"
        "from deepkit import one_round\n"
        "from vramtop.deep.core import DeepCore\n"
        f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        f"core = DeepCore(dirs=[({str(sockets)!r}, os.geteuid())])\n"
        "message, _ = one_round(core)\n"
        "print(json.dumps({'uid': os.geteuid(), 'pids': [p.identity.pid for p in "
        "message.processes], 'notes': list(message.notes)}))\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", monitor], capture_output=True, text=True,
                             cwd="/", timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        assert seen["uid"] == NOBODY
        assert seen["pids"] == [own.pid]
        assert f"{foreign.pid}.sock is served by UID 0" in " ".join(seen["notes"])
        # Root's monitor reads any user's reporters (the security model's "root: any").
        message, _ = one_round(DeepCore(dirs=[(str(sockets), NOBODY)]))
        assert sorted(p.identity.pid for p in message.processes) == sorted([own.pid, foreign.pid])
    finally:
        for p in (foreign, own):
            p.communicate("")
        shutil.rmtree(sockets, ignore_errors=True)


def test_garbage_endless_and_silent_reporters_cannot_stall_the_deep_actor(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [{"uuid": UUID_A, "stats": stats(GiB, 2 * GiB)}])
    good = start_reporter(env, state)
    env.sockets.chmod(0o700)
    bad = {mode: start_server(mode, env.sockets) for mode in ("garbage", "endless", "silent")}
    timeout = 4.0
    core = DeepCore(dirs=env.dirs(), timeout_s=timeout)
    try:
        for _ in range(2):  # and again: one bad round leaves nothing behind that blocks the next
            message, durations = one_round(core, limit_s=6 * timeout)
            # A core that waited on the silent reporter (or read the endless line to its end)
            # would spend the whole timeout inside one tick; half of it is a generous bound.
            assert max(durations) < timeout / 2, max(durations)
            by_pid = {p.identity.pid: p for p in message.processes}
            assert by_pid[good.pid].report is not None
            assert by_pid[good.pid].report.devices[0].reserved_bytes == 2 * GiB  # type: ignore[union-attr]
            assert by_pid[bad["garbage"].pid].problem == "not JSON"
            assert (
                by_pid[bad["endless"].pid].problem == f"line longer than {protocol.MAX_LINE} bytes"
            )
            assert by_pid[bad["silent"].pid].problem == f"no answer within {timeout:g} s"
            assert all(by_pid[p.pid].report is None for p in bad.values())
        ui = Ui()
        ui.handle(sample_for([(bad["garbage"].pid, 0, GiB)]))
        ui.handle(message)
        assert "nothing usable read: not JSON" in detail_of(ui, bad["garbage"].pid)
    finally:
        good.stop()
        for p in bad.values():
            p.communicate("")


def test_oom_observer_call_reaches_the_detail_panel(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [{
        "uuid": UUID_A, "stats": stats(70 * GiB, 75 * GiB, num_ooms=1),
        "free": 2 * GiB, "total": 80 * GiB,
    }])  # fmt: skip
    r = start_reporter(env, state)
    try:
        core = DeepCore(dirs=env.dirs())
        one_round(core)  # the first request attaches the observer (CUDA is up)
        before = time.time()
        r.command(f"oom 0 {2 * GiB} {80 * GiB} {int(0.4 * GiB)}")
        message, _ = one_round(core)
        report = message.processes[0].report
        assert report is not None and len(report.ooms) == 1
        assert report.ooms[0].at >= before - 1
        ui = Ui()
        ui.handle(sample_for([(r.pid, 0, 76 * GiB)]))
        ui.handle(message)
        detail = detail_of(ui, r.pid)
        at = time.strftime("%H:%M:%S", time.localtime(report.ooms[0].at))
        assert f"OOM inside PyTorch at {at}: tried to allocate 2.0 GiB with 0.4 GiB free" in detail
        assert "OOMs 1" in detail
    finally:
        r.stop()
    assert not Path(str(state) + ".violations").exists(), "observer attached before CUDA init"


def test_rising_retries_are_counted_per_minute_and_reach_the_verdict(tmp_path: Path) -> None:
    from vramtop.analysis.model import TIGHT
    from vramtop.analysis.verdict import VerdictInput, judge

    env = make_env(tmp_path)
    state = tmp_path / "t.json"
    write_state(state, [{"uuid": UUID_A, "stats": stats(GiB, 2 * GiB, retries=5)}])
    r = start_reporter(env, state)
    try:
        core = DeepCore(dirs=env.dirs())
        first, _ = one_round(core)
        assert first.processes[0].retries_last_minute == 0, "retries from before are not a rise"
        write_state(state, [{"uuid": UUID_A, "stats": stats(GiB, 2 * GiB, retries=17)}])
        second, _ = one_round(core)
        assert second.processes[0].retries_last_minute == 12
    finally:
        r.stop()
    verdict, reason = judge(VerdictInput("stable", 0.0, 2.0 * GiB, 30, 40.0 * GiB,
                                         alloc_retries_last_minute=12))  # fmt: skip
    assert (verdict, reason) == (TIGHT, "allocator retrying: 12 retries in the last minute")


def test_sockets_are_removed_on_exit_and_sigterm_and_stale_ones_by_the_monitor(
    tmp_path: Path,
) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [{"uuid": UUID_A, "stats": stats(GiB, GiB)}])
    normal, termed, killed = (start_reporter(env, state) for _ in range(3))
    paths = {r.pid: Path(str(r.path)) for r in (normal, termed, killed)}
    assert all(p.exists() for p in paths.values())
    assert normal.stop() == 0
    termed.proc.send_signal(signal.SIGTERM)
    assert termed.stop() == -signal.SIGTERM, "still dies of SIGTERM, as without vramtop"
    killed.proc.kill()
    killed.stop()
    assert not paths[normal.pid].exists() and not paths[termed.pid].exists()
    assert paths[killed.pid].exists(), "SIGKILL leaves the socket behind"
    core = DeepCore(dirs=env.dirs())
    _wake, out = core.tick(time.monotonic())  # no live reporter: one round, nothing to send
    assert core.rounds == 1 and out == [] and core.removed_stale == 1
    assert not paths[killed.pid].exists()


def test_two_monitors_read_the_same_reporter(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [{"uuid": UUID_A, "stats": stats(GiB, 3 * GiB)}])
    r = start_reporter(env, state)
    try:
        first, second = DeepCore(dirs=env.dirs()), DeepCore(dirs=env.dirs())
        for core in (first, second, first):
            message, _ = one_round(core)
            report = message.processes[0].report
            assert report is not None and report.devices[0].reserved_bytes == 3 * GiB
    finally:
        r.stop()


def test_protocol_refuses_what_it_does_not_know() -> None:
    good = {"v": 1, "state": "ok", "sent_at": 1.0, "devices": [], "ooms": []}
    device = {"index": 0, "gpu_uuid": "GPU-1", **dict.fromkeys(protocol.DEVICE_COUNTS, 1)}
    assert (
        protocol.decode(json.dumps({**good, "devices": [device]}).encode()).devices[0].segments == 1
    )
    for bad, why in (
        ({**good, "v": 2}, "unsupported protocol version 2"),
        ({**good, "state": "\x1b[31mhacked"}, "unknown state"),
        ({**good, "state": "no_torch", "devices": [device]}, "device figures with state no_torch"),
        ({**good, "devices": [{**device, "index": -1}]}, "index is not a non-negative integer"),
        ({**good, "devices": [{**device, "segments": True}]}, "segments is not a non-negative"),
        ({**good, "devices": [device] * 65}, "too many devices"),
        ([1, 2], "not a JSON object"),
    ):
        with pytest.raises(protocol.ProtocolError, match=re.escape(why)):
            protocol.decode(json.dumps(bad).encode())
    noisy = {**good, "state": "error", "error": "boom\x1b]0;title\x07 \u202e"}
    assert "\x1b" not in protocol.decode(json.dumps(noisy).encode()).error
    with pytest.raises(protocol.ProtocolError, match="longer than"):
        protocol.decode(b"x" * (protocol.MAX_LINE + 1))
    with pytest.raises(protocol.ProtocolError, match="not JSON"):
        protocol.decode(b"\xff\xfe\n")


def test_json_document_and_csv_carry_the_deep_figures(tmp_path: Path) -> None:
    import csv
    import io

    import jsonschema

    from vramtop.deep.attribution import index
    from vramtop.export.csvlog import HEADER_LINE, format_sample
    from vramtop.export.document import schema_text, to_document
    from vramtop.export.text import to_table

    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [
        {"uuid": UUID_A, "stats": stats(3 * GiB, 5 * GiB, retries=4), "free": GiB,
         "total": 80 * GiB},
    ])  # fmt: skip
    r = start_reporter(env, state)
    plain = os.getpid()
    try:
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        sample = sample_for([(r.pid, 0, 6 * GiB), (plain, 0, GiB)])  # while it lives: /proc
    finally:
        r.stop()
    deep = index(message.processes)
    doc = to_document(sample.snapshot, sample.rows, deep=deep)
    jsonschema.validate(doc, json.loads(schema_text()))
    procs = {p["pid"]: p for p in doc["gpus"][0]["processes"]}
    assert procs[plain]["deep"] is None
    d = procs[r.pid]["deep"]
    assert (d["state"], d["torch_version"], d["problem"]) == ("ok", "2.3.1+fake", None)
    assert d["devices"][0]["gpu_uuid"] == f"GPU-{UUID_A}"
    assert d["devices"][0]["reserved_bytes"] == 5 * GiB
    assert d["devices"][0]["num_alloc_retries"] == 4
    assert d["devices"][0]["device_free_bytes"] == GiB

    text = HEADER_LINE + "\n" + format_sample(sample.snapshot, sample.rows, deep=deep).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    table = to_table(sample.snapshot, sample.rows, deep=deep).splitlines()
    at = next(i for i, line in enumerate(table) if line.split()[:1] == [str(r.pid)])
    assert table[at + 1].split() == ["deep:", "torch", "2.3.1+fake:", "allocated", "3.0G,",
                                     "reserved", "5.0G,", "active", "3.1G,", "retries", "4,",
                                     "OOMs", "0"]  # fmt: skip
    by_pid = {row["pid"]: row for row in rows if row["row"] == "process"}
    assert by_pid[str(r.pid)]["deep_reserved_bytes"] == str(5 * GiB)
    assert by_pid[str(r.pid)]["deep_allocated_bytes"] == str(3 * GiB)
    assert by_pid[str(r.pid)]["deep_alloc_retries"] == "4"
    assert by_pid[str(plain)]["deep_reserved_bytes"] == ""


def test_a_socket_directory_open_to_others_is_refused_not_repaired(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    env.sockets.mkdir(mode=0o700)
    env.sockets.chmod(0o777)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    fallback = tmp / f"vramtop-{os.geteuid()}"
    fallback.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(fallback, NOBODY, NOBODY)  # made by someone else before us
    else:
        fallback.chmod(0o755)
    environ = {**env.environ(torch=False), "TMPDIR": str(tmp)}
    out = subprocess.run([sys.executable, "-c", "import vramtop; print(vramtop.report())"],
                         env=environ, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.stdout.strip() == "None"
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("vramtop: deep mode off: ")
    assert "is open to others (mode 777)" in line and str(fallback) in line
    assert (env.sockets.stat().st_mode & 0o777) == 0o777, "left as it was found"
    assert list(env.sockets.iterdir()) == [] and list(fallback.iterdir()) == []


def test_a_forked_child_leaves_the_parents_socket_alone(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    code = (
        "import os, vramtop\n"
        "path = vramtop.report()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    from vramtop.deep import reporter\n"
        "    os.write(1, f'child serving={reporter.serving()}\\n'.encode())\n"
        "    raise SystemExit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print('parent', os.path.exists(path), flush=True)\n"
        "import sys; sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=env.environ(torch=False),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "child serving=None"
        assert proc.stdout.readline().strip() == "parent True", "the child's exit kept it"
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        assert [p.identity.pid for p in message.processes] == [proc.pid]
    finally:
        proc.communicate("")


def test_allocator_retries_turn_a_stable_process_tight_in_the_analysis() -> None:
    import numpy as np

    from vramtop.analysis.analyzer import AnalysisContext, Analyzer, GpuHistory, ProcessHistories
    from vramtop.messages import ProcessIdentity

    ts = np.arange(60.0)
    calm, retrying = ProcessIdentity(10, 1.0), ProcessIdentity(11, 2.0)
    procs = ProcessHistories.build(ts, [(calm, 0, np.full(60, 4.0 * GiB)),
                                        (retrying, 0, np.full(60, 6.0 * GiB))])  # fmt: skip
    gpu = GpuHistory(0, ts, np.full(60, 10.0 * GiB), total=80.0 * GiB, free=70.0 * GiB)
    analyzer = Analyzer()
    for _ in range(3):  # past the phase hysteresis
        result = analyzer.step([gpu], procs, AnalysisContext(alloc_retries={retrying: 12}))
    verdicts = {p.identity: (p.verdict, p.reason) for p in result.processes}
    assert verdicts[calm][0] == "OK"
    assert verdicts[retrying] == ("TIGHT", "allocator retrying: 12 retries in the last minute")


def test_without_reporters_a_round_sends_nothing_new(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [{"uuid": UUID_A, "stats": stats(GiB, GiB)}])
    core = DeepCore(dirs=env.dirs())
    for _ in range(2):
        core.next_round = 0.0
        _wake, out = core.tick(time.monotonic())
        assert out == [], "no reporter: the readers already know, nobody is woken"
    assert core.rounds == 2
    r = start_reporter(env, state)
    try:
        message, _ = one_round(core)
        assert [p.identity.pid for p in message.processes] == [r.pid]
    finally:
        r.stop()
    gone, _ = one_round(core)
    assert gone.processes == (), "its leaving is news: sent"


class _OneProcessBackend:
    """A backend whose only GPU process is ``pid`` (a reporter): what NVML would list."""

    name = "simulated"

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def open(self) -> None:
        pass

    def sample(self) -> Snapshot:
        return sample_for([(self.pid, 0, 6 * GiB)]).snapshot

    def close(self) -> None:
        pass


def test_the_headless_recorder_writes_the_deep_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv

    from vramtop.export.csvlog import CsvLog
    from vramtop.modes.record import record

    env = make_env(tmp_path)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(env.runtime))
    state = write_state(tmp_path / "t.json", [{"uuid": UUID_A, "stats": stats(GiB, 3 * GiB)}])
    r = start_reporter(env, state)
    path = tmp_path / "rec.csv"
    try:
        with CsvLog(str(path)) as log:
            assert record(_OneProcessBackend(r.pid), log, 0.5, max_samples=2) == 2
    finally:
        r.stop()
    rows = [row for row in csv.DictReader(path.open()) if row["row"] == "process"]
    assert [row["deep_reserved_bytes"] for row in rows] == [str(3 * GiB)] * 2


def test_a_symlink_in_the_socket_directory_is_not_followed(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [{"uuid": UUID_A, "stats": stats(GiB, GiB)}])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    real = start_reporter(env, state)
    try:
        assert real.path is not None
        target = elsewhere / f"{real.pid}.sock"
        os.rename(real.path, target)
        (env.sockets / f"{real.pid}.sock").symlink_to(target)
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        assert message.processes == ()
        assert f"{real.pid}.sock: not a socket" in " ".join(message.notes)
    finally:
        real.stop()


def test_prometheus_metrics_carry_the_deep_figures(tmp_path: Path) -> None:
    from vramtop.actors.metrics import MetricsCore

    env = make_env(tmp_path)
    state = write_state(tmp_path / "t.json", [
        {"uuid": UUID_A, "stats": stats(3 * GiB, 5 * GiB, retries=7), "free": GiB,
         "total": 80 * GiB},
    ])  # fmt: skip
    r = start_reporter(env, state)
    try:
        message, _ = one_round(DeepCore(dirs=env.dirs()))
        sample = sample_for([(r.pid, 0, 6 * GiB)])
    finally:
        r.stop()
    core = MetricsCore()  # not started: no HTTP server, the collector is called directly
    core.handle([sample, message], time.monotonic())
    values = {
        (family.name, s.labels.get("pid")): s.value
        for family in core.collect()
        for s in family.samples
    }
    pid = str(r.pid)
    assert values[("vramtop_process_torch_reserved_bytes", pid)] == 5 * GiB
    assert values[("vramtop_process_torch_allocated_bytes", pid)] == 3 * GiB
    retries = [v for (name, p), v in values.items() if "alloc_retries" in name and p == pid]
    assert retries == [7]
