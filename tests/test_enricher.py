"""The enricher core and actor: caching by identity, revisits, vanishing processes, bounded reads,
the PID-namespace note, and the messages the actor sends.

Also home of the helpers the other ``test_enrich_*`` files share: :func:`spawn` starts real
processes with a crafted title, open and mapped files, another UID, or a child of their own, and
:class:`FakeProc` writes a /proc tree of fixture files for the injectable proc root.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from vramtop.config import Config
from vramtop.enrich.enricher import NAMESPACE_NOTE, Enricher
from vramtop.enrich.procfs import CMDLINE_MAX, MAPS_MAX, ProcFS, RecordingProcFS
from vramtop.messages import ProcessIdentity, ProcessRow, ProcessRows

CLK_TCK = os.sysconf("SC_CLK_TCK")
BTIME = 1_700_000_000

# A child process: optional privilege drop, open and mapped files, a title, a forked child of
# its own (config "child"), then "ok PID" for each process on stdout and sleep until killed.
_CHILD = r"""
import json, mmap, os, signal, sys, ctypes
def setup(cfg):
    keep = []
    for p in cfg.get("open", []):
        keep.append(open(p, "rb"))
    # libc's mmap, not Python's (which keeps a dup of the descriptor): mapped only, no fd.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    for p in cfg.get("mmap", []):
        fd = os.open(p, os.O_RDONLY)
        addr = libc.mmap(None, os.fstat(fd).st_size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        os.close(fd)
        assert addr not in (None, ctypes.c_void_p(-1).value), "mmap failed"
    if cfg.get("uid") is not None:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    if cfg.get("title"):
        import setproctitle
        setproctitle.setproctitle(cfg["title"])
    return keep
def main():
    import setproctitle  # before any privilege drop: the venv may not be readable after it
    cfg = json.loads(sys.argv[1])
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
    keep = setup(cfg)
    if cfg.get("child"):
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
            keep2 = setup(cfg["child"])
            os.write(1, b"ok %d\n" % os.getpid())
            while True:
                signal.pause()
    os.write(1, b"ok %d\n" % os.getpid())
    while True:
        signal.pause()
main()
"""


@dataclass
class Spawned:
    popen: subprocess.Popen[bytes]
    pids: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.pids[0]

    def row(self, index: int = 0, gpu: int = 0) -> ProcessRow:
        return row_for(self.pids[index], gpu)

    def close(self) -> None:
        for pid in reversed(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


def spawn(env: dict[str, str] | None = None, **cfg: Any) -> Spawned:
    """Start a child configured as ``_CHILD`` reads it; returns once every process said ok.
    The first PID is the child, the second (when ``child=`` is given) the grandchild."""
    full_env = dict(os.environ, SPT_NOENV="1", **(env or {}))
    popen = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=full_env,
        start_new_session=True,
    )
    spawned = Spawned(popen)
    want = 2 if cfg.get("child") else 1
    assert popen.stdout is not None
    lines: dict[int, int] = {}
    while len(lines) < want:
        line = popen.stdout.readline()
        assert line.startswith(b"ok "), f"child failed to start: {line!r}"
        pid = int(line.split()[1])
        lines[pid] = pid
    popen.stdout.close()
    spawned.pids = [popen.pid, *(p for p in lines if p != popen.pid)]
    return spawned


@pytest.fixture
def procs() -> Iterator[list[Spawned]]:
    started: list[Spawned] = []
    yield started
    for s in started:
        s.close()


def row_for(pid: int, gpu: int = 0, start: float | None = None, command: str = "") -> ProcessRow:
    if start is None:
        start = psutil.Process(pid).create_time()
    return ProcessRow(ProcessIdentity(pid, start), gpu, -1, "", command, True)


class FakeProc:
    """A /proc tree of fixture files for ``ProcFS(root=...)``."""

    def __init__(self, root: Path, own_ns: str = "pid:[4026531836]") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "stat").write_text(f"cpu 1 2 3\nbtime {BTIME}\n")
        (root / "self" / "ns").mkdir(parents=True)
        os.symlink(own_ns, root / "self" / "ns" / "pid")

    def add(
        self,
        pid: int,
        *,
        uid: int = 0,
        ppid: int = 1,
        ticks: int = 500,
        cmdline: bytes | str = b"",
        cgroup: str = "0::/\n",
        nspid: tuple[int, ...] = (),
        maps: bytes = b"",
    ) -> ProcessRow:
        d = self.root / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        self.set_stat(pid, ticks, ppid)
        ns = "\t".join(str(p) for p in (pid, *nspid))
        (d / "status").write_text(
            f"Name:\tproc\nPPid:\t{ppid}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nNSpid:\t{ns}\n"
        )
        (d / "cgroup").write_text(cgroup)
        raw = cmdline.encode() if isinstance(cmdline, str) else cmdline
        (d / "cmdline").write_bytes(raw)
        (d / "maps").write_bytes(maps)
        (d / "fd").mkdir(exist_ok=True)
        return ProcessRow(ProcessIdentity(pid, self.start_time(ticks)), 0, -1, "", "", True)

    def set_stat(self, pid: int, ticks: int, ppid: int = 1) -> None:
        fields = ["S", str(ppid)] + ["0"] * 17 + [str(ticks)] + ["0"] * 30
        (self.root / str(pid) / "stat").write_text(f"{pid} (proc) " + " ".join(fields) + "\n")

    @staticmethod
    def start_time(ticks: int) -> float:
        return BTIME + ticks / CLK_TCK


# -- caching and cost ---------------------------------------------------------------------------


def test_unchanged_processes_cost_no_reads(procs: list[Spawned]) -> None:
    procs.append(spawn(title="vllm serve /models/llama"))
    fs = RecordingProcFS()
    now = [0.0]
    enricher = Enricher(fs, clock=lambda: now[0])
    rows = [procs[0].row(gpu=0), procs[0].row(gpu=1)]  # one process on two GPUs
    first = enricher.update(rows)
    assert [e.framework for e in first] == ["vLLM"]  # one enrichment per identity
    touched = len(fs.accessed)
    assert touched > 0
    for t in (0.5, 1.0, 1.5):
        now[0] = t
        assert enricher.update(rows) == []
    assert len(fs.accessed) == touched  # nothing read for an unchanged process


def test_young_process_is_revisited_and_change_reported(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    row = fake.add(4242, cmdline=b"python3\0train.py\0")
    now = [0.0]
    enricher = Enricher(ProcFS(str(fake.root)), my_uid=0, clock=lambda: now[0])
    (first,) = enricher.update([row])
    assert first.framework == ""
    # The server sets its title a moment later (as vLLM's engine does).
    (fake.root / "4242" / "cmdline").write_bytes(b"VLLM::EngineCore")
    now[0] = 1.0
    assert enricher.update([row]) == []  # not due yet: no re-read
    now[0] = 2.5
    (changed,) = enricher.update([row])
    assert changed.framework == "vLLM" and changed.identity == row.identity
    now[0] = 12.0
    assert enricher.update([row]) == []  # re-read, nothing new: nothing sent
    assert enricher.reads == 3


def test_revisits_stop_after_the_schedule(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    rows = [fake.add(100 + i) for i in range(5)]
    now = [0.0]
    enricher = Enricher(ProcFS(str(fake.root)), my_uid=0, clock=lambda: now[0])
    enricher.update(rows)
    for step in range(1, 200):
        now[0] = float(step)
        enricher.update(rows)
    settled = enricher.reads
    for step in range(200, 400):
        now[0] = float(step)
        enricher.update(rows)
    assert enricher.reads == settled  # old processes cost nothing
    assert settled == 5 * (1 + len(enricher.revisit_after))


def test_gone_identities_are_forgotten_and_reused_pid_is_new(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    old = fake.add(777, ticks=100, cmdline="vllm\0serve\0")
    enricher = Enricher(ProcFS(str(fake.root)), my_uid=0)
    assert enricher.update([old])[0].framework == "vLLM"
    assert enricher.update([]) == []
    assert enricher.get(old.identity) is None
    # The PID comes back as another program: a new identity, read afresh.
    new = fake.add(777, ticks=900, cmdline="llama-server\0-m\0x.gguf\0")
    (e,) = enricher.update([new])
    assert (e.identity, e.framework) == (new.identity, "llama.cpp")
    # The sampler's stale identity for the PID is not given the new process's details.
    (stale,) = Enricher(ProcFS(str(fake.root)), my_uid=0).update([old])
    assert (stale.uid, stale.cmdline, stale.framework) == (-1, (), "")


def test_process_gone_before_read_is_a_normal_event(procs: list[Spawned]) -> None:
    s = spawn()
    row = s.row()
    s.close()
    (e,) = Enricher().update([row])
    assert e.identity == row.identity and e.uid == -1 and e.cmdline == ()
    unresolved = ProcessRow(ProcessIdentity(row.identity.pid, 0.0), 0, -1, "", "", False)
    (u,) = Enricher().update([unresolved])
    assert u.uid == -1 and not u.same_user


def test_process_replaced_mid_read_keeps_only_identity_facts(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    row = fake.add(55, uid=0, cmdline="vllm\0serve\0")

    class Racing(ProcFS):
        def maps(self, pid: int) -> bytes | None:
            fake.set_stat(pid, ticks=99_999)  # the process exits and its PID is reused
            return super().maps(pid)

    (e,) = Enricher(Racing(str(fake.root)), my_uid=0).update([row])
    assert e.uid == 0 and e.user == "root"
    assert (e.cmdline, e.framework, e.model_files) == ((), "", ())


def test_reads_are_bounded(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    huge_args = b"\0".join(b"a" * 1000 for _ in range(1000))  # 1 MB command line
    row = fake.add(9, cmdline=huge_args, maps=b"x" * (MAPS_MAX * 2))
    fs = ProcFS(str(fake.root))
    assert len(fs.maps(9) or b"") == MAPS_MAX
    cmd = fs.cmdline(9) or ()
    assert sum(len(a) + 1 for a in cmd) <= CMDLINE_MAX + 1
    (e,) = Enricher(fs, my_uid=0).update([row])
    assert 0 < len(e.cmdline) <= 128 and all(len(a) <= 256 for a in e.cmdline)


def test_hostile_cmdline_renders_as_plain_text(procs: list[Spawned]) -> None:
    title = "\x1b[31mvllm\x1b[0m serve \x1b]0;pwned\x07/models/\x07evil\x08\x7fname"
    procs.append(spawn(title=title))
    (e,) = Enricher().update([procs[0].row()])
    text = " ".join(e.cmdline)
    assert text == "vllm serve /models/evilname"
    assert all(ch.isprintable() for ch in text + e.framework_evidence + e.user)
    assert e.framework == "vLLM"  # the escapes hid nothing from detection either


# -- PID namespaces -------------------------------------------------------------------------------


def test_namespace_note_when_pids_do_not_resolve_in_a_container(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc", own_ns="pid:[4026532999]")
    fake.add(12)
    enricher = Enricher(ProcFS(str(fake.root)), my_uid=0)
    assert enricher.namespace_note([12]) is None  # every NVML PID exists here
    assert enricher.namespace_note([12, 31337]) == NAMESPACE_NOTE
    assert "--pid=host" in NAMESPACE_NOTE


def test_no_namespace_note_in_the_host_namespace(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    enricher = Enricher(ProcFS(str(fake.root)), my_uid=0)
    assert enricher.namespace_note([31337]) is None  # gone: an ordinary exit, not a namespace
    assert Enricher().namespace_note([os.getpid()]) is None  # this machine: host namespace


# -- the actor ---------------------------------------------------------------------------------


def _sample(seq: int, rows: list[ProcessRow]) -> ProcessRows:
    return ProcessRows(seq, float(seq), tuple(rows))


def test_actor_posts_new_enrichments_then_only_changes_and_resyncs(tmp_path: Path) -> None:
    from vramtop.actors.base import ActorContext
    from vramtop.actors.enricher import RECEIVERS, RESYNC_SECONDS, EnricherCore

    fake = FakeProc(tmp_path / "proc", own_ns="pid:[4026532999]")
    a = fake.add(21, cmdline="vllm\0serve\0")
    ghost = ProcessRow(ProcessIdentity(99999, 0.0), 0, -1, "", "", False)
    now = [0.0]
    core = EnricherCore(Enricher(ProcFS(str(fake.root)), my_uid=0), clock=lambda: now[0])
    ctx: Any = ActorContext("enricher", Config(), None, None, {}, "")  # type: ignore[arg-type]
    assert core.start(ctx) == []
    assert core.tick(5.0) == (65.0, [])  # message-driven: ticks only to stay alive

    out = core.handle([_sample(1, [a])], 0.0)
    assert [dest for dest, _ in out] == list(RECEIVERS)
    msg = out[0][1]
    assert all(m is msg for _, m in out), "one message object for every receiver"
    assert [e.framework for e in msg.items] == ["vLLM"]  # type: ignore[attr-defined]
    assert msg.notes == ()  # type: ignore[attr-defined]
    now[0] = 1.0
    assert core.handle([_sample(2, [a])], 0.0) == []  # nothing new: nothing sent
    now[0] = 1.5
    # A batch of two: only the newest rows are enriched (a PID from another namespace).
    out = core.handle([_sample(3, [a]), _sample(4, [a, ghost])], 0.0)
    msg = out[0][1]
    assert msg.notes == (NAMESPACE_NOTE,)  # type: ignore[attr-defined]
    assert [e.identity.pid for e in msg.items] == [99999]  # type: ignore[attr-defined]
    now[0] = 1.6
    assert core.handle([_sample(5, [a, ghost])], 0.0) == []  # the note is said once
    now[0] = RESYNC_SECONDS + 1.0
    full = core.handle([_sample(6, [a, ghost])], 0.0)[0][1]
    assert {e.identity.pid for e in full.items} == {21, 99999}  # type: ignore[attr-defined]
