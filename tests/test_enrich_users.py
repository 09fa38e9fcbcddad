"""Users and the same-UID rule: another user's process has nothing but stat, status and cgroup
read (proved by recording every path the proc reader touches), is hidden when
``show_other_users`` is false, and its memory is still accounted per GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_enricher import Spawned, procs, spawn  # noqa: F401  (procs is a fixture)

from vramtop.enrich.enricher import Enricher
from vramtop.enrich.procfs import RecordingProcFS
from vramtop.enrich.users import OtherUsers, aggregate_other_users, user_name
from vramtop.gpu.snapshot import GpuSample, ProcessSample, Snapshot
from vramtop.messages import ProcessIdentity, ProcessRow
from vramtop.render.filters import visible_rows

GiB = 1024**3
NOBODY = 65534
DAEMON = 1  # stands in for "the user running vramtop"
WORLD_READABLE = {"stat", "status", "cgroup"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another UID needs root")


def _weights(tmp_path: Path) -> str:
    path = tmp_path / "models" / "secret.safetensors"
    path.parent.mkdir()
    with open(path, "wb") as f:
        f.truncate(2**20)
    return str(path)


def test_other_users_process_details_are_never_read(
    procs: list[Spawned],  # noqa: F811
    tmp_path: Path,
) -> None:
    secret = _weights(tmp_path)
    procs.append(spawn(uid=NOBODY, open=[secret], mmap=[secret], title="vllm serve /m/secret"))
    procs.append(spawn(uid=DAEMON, open=[secret], title="vllm serve /m/mine"))
    theirs, mine = procs[0], procs[1]
    fs = RecordingProcFS()
    enricher = Enricher(fs, my_uid=DAEMON)
    got = {e.identity.pid: e for e in enricher.update([theirs.row(), mine.row()])}

    other = got[theirs.pid]
    assert (other.uid, other.user, other.same_user) == (NOBODY, "nobody", False)
    assert (other.cmdline, other.framework, other.model_files) == ((), "", ())
    assert set(fs.touched(theirs.pid)) <= WORLD_READABLE  # no cmdline, maps, fd, environ, root
    assert "status" in fs.touched(theirs.pid)

    own = got[mine.pid]
    assert own.same_user and own.framework == "vLLM" and own.model_files
    assert {"cmdline", "maps", "fd"} <= set(fs.touched(mine.pid))  # readable: the rule, not EACCES

    # Root inspects everyone (the security model's "root: all").
    (as_root,) = Enricher(my_uid=0).update([theirs.row()])
    assert as_root.same_user and as_root.framework == "vLLM"
    assert [m.path for m in as_root.model_files] == [secret]


def test_hidden_rows_still_add_up_per_gpu(procs: list[Spawned]) -> None:  # noqa: F811
    procs.append(spawn(uid=NOBODY, title="python3 train.py"))
    procs.append(spawn(uid=NOBODY, title="python3 eval.py"))
    procs.append(spawn(uid=DAEMON, title="python3 mine.py"))
    a, b, mine = procs
    rows = [a.row(gpu=0), a.row(gpu=1), b.row(gpu=0), mine.row(gpu=0)]
    used = {
        (a.pid, 0): 30 * GiB,
        (a.pid, 1): 5 * GiB,
        (b.pid, 0): int(11.2 * GiB),
        (mine.pid, 0): 2 * GiB,
    }
    snap = Snapshot(
        0.0,
        "simulated",
        (GpuSample(0, "GPU-0", "sim"), GpuSample(1, "GPU-1", "sim")),
        tuple(ProcessSample(pid, gpu, used_bytes=n) for (pid, gpu), n in used.items()),
    )
    enricher = Enricher(my_uid=DAEMON)
    enricher.update(rows)
    known = enricher.known

    seen = visible_rows(snap, rows, known, show_other_users=False)
    shown = seen.rows
    assert [r.identity.pid for r in shown] == [mine.pid]
    everyone = visible_rows(snap, rows, known, show_other_users=True)
    assert everyone.rows == tuple(rows) and everyone.others == {}

    other = aggregate_other_users(rows, known, snap)
    assert seen.others == other
    assert other == {0: OtherUsers(0, 2, int(41.2 * GiB)), 1: OtherUsers(1, 1, 5 * GiB)}
    assert other[0].label == "other users: 2 processes, 41.2 GiB"
    assert other[1].label == "other users: 1 process, 5.0 GiB"
    for gpu in (0, 1):
        listed = sum(used[(r.identity.pid, gpu)] for r in shown if r.gpu_index == gpu)
        assert listed + other[gpu].used_bytes == snap.process_memory_sum(gpu)


def test_rows_without_enrichment_use_the_samplers_verdict() -> None:
    def row(pid: int, user: str, same: bool) -> ProcessRow:
        return ProcessRow(ProcessIdentity(pid, 1.0), 0, -1, user, "", same)

    rows = [row(1, "alice", True), row(2, "bob", False), row(3, "", False)]
    # pid 3: owner unknown (vanished / another PID namespace): shown, not blamed on others.
    snap = Snapshot(0.0, "simulated", (GpuSample(0, "GPU-0", "sim"),), (ProcessSample(2, 0),))
    seen = visible_rows(snap, rows, None, show_other_users=False)
    assert [r.identity.pid for r in seen.rows] == [1, 3]
    assert aggregate_other_users(rows, {}, snap) == {0: OtherUsers(0, 1, 0)}  # n/a counts as 0
    assert OtherUsers(0, 1, 300 * 2**20).label == "other users: 1 process, 300 MiB"


def test_user_names() -> None:
    cache: dict[int, str] = {}
    assert user_name(0, cache) == "root" and cache == {0: "root"}
    assert user_name(NOBODY) == "nobody"
    assert user_name(4_000_000) == "4000000"  # no passwd entry: the number
    assert user_name(-1) == ""
