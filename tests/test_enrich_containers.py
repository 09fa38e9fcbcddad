"""Containers from /proc/PID/cgroup (v1 and v2) and NSpid, read through a fixture proc root for
every runtime vramtop names: docker, podman, containerd, CRI-O, Kubernetes, LXC."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_enricher import FakeProc

from vramtop.enrich.containers import detect
from vramtop.enrich.enricher import Enricher
from vramtop.enrich.procfs import ProcFS

ID = "3f2a9c1b" + "0123456789abcdef" * 3 + "01234567"  # 64 hex digits
POD = "5b0e8a52-7c1d-4f0e-9a3b-1c2d3e4f5a6b"
POD_SYSTEMD = POD.replace("-", "_")

V1_CONTROLLERS = ("cpu,cpuacct", "memory", "devices", "name=systemd")


def v1(path: str) -> str:
    return "".join(f"{i + 2}:{c}:{path}\n" for i, c in enumerate(V1_CONTROLLERS)) + "1:pids:/\n"


def v2(path: str) -> str:
    return f"0::{path}\n"


CASES = [
    # (name, cgroup file, runtime, id, pod uid)
    ("docker v1", v1(f"/docker/{ID}"), "docker", ID, ""),
    ("docker v2 systemd", v2(f"/system.slice/docker-{ID}.scope"), "docker", ID, ""),
    ("docker v2 cgroupfs", v2(f"/docker/{ID}"), "docker", ID, ""),
    ("podman v1", v1(f"/machine.slice/libpod-{ID}.scope"), "podman", ID, ""),
    ("podman v2", v2(f"/machine.slice/libpod-{ID}.scope/container"), "podman", ID, ""),
    (
        "podman rootless",
        v2(f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
        "podman",
        ID,
        "",
    ),
    ("containerd v2", v2(f"/system.slice/cri-containerd-{ID}.scope"), "containerd", ID, ""),
    ("containerd v1 namespace", v1(f"/default/{ID}"), "containerd", ID, ""),
    ("nerdctl v2", v2(f"/system.slice/nerdctl-{ID}.scope"), "containerd", ID, ""),
    ("cri-o v2", v2(f"/machine.slice/crio-{ID}.scope"), "cri-o", ID, ""),
    ("cri-o v1", v1(f"/system.slice/crio-{ID}.scope"), "cri-o", ID, ""),
    ("kubernetes v1 cgroupfs", v1(f"/kubepods/burstable/pod{POD}/{ID}"), "kubernetes", ID, POD),
    (
        "kubernetes v2 systemd containerd",
        v2(
            "/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{POD_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        ),
        "kubernetes",
        ID,
        POD,
    ),
    (
        "kubernetes v2 systemd cri-o",
        v2(f"/kubepods.slice/kubepods-pod{POD_SYSTEMD}.slice/crio-{ID}.scope"),
        "kubernetes",
        ID,
        POD,
    ),
    ("kubernetes pod only", v2(f"/kubepods/besteffort/pod{POD}"), "kubernetes", "", POD),
    ("lxc v1", v1("/lxc/trainbox"), "lxc", "trainbox", ""),
    ("lxc v2 payload", v2("/lxc.payload.trainbox/init.scope"), "lxc", "trainbox", ""),
]


@pytest.mark.parametrize(("name", "cgroup", "runtime", "cid", "pod"), CASES)
def test_every_runtime_through_a_fixture_proc_root(
    tmp_path: Path, name: str, cgroup: str, runtime: str, cid: str, pod: str
) -> None:
    fake = FakeProc(tmp_path / "proc")
    row = fake.add(4100, cgroup=cgroup, nspid=(7,))
    (e,) = Enricher(ProcFS(str(fake.root)), my_uid=0).update([row])
    assert e.container is not None, name
    c = e.container
    assert (c.runtime, c.id, c.pod_uid, c.pid_in_container) == (runtime, cid, pod, 7)
    assert c.short_id == cid[:12]


@pytest.mark.parametrize(
    "cgroup",
    [
        v2("/user.slice/user-1000.slice/session-3.scope"),
        v1("/"),
        v2("/"),  # inside a cgroup namespace: nothing to tell
        v2("/system.slice/docker.service"),  # the daemon, not a container
        v2("/lxc.monitor.trainbox"),  # LXC's monitor process
        v2("/home/docker-notes/abc"),
        "",
    ],
)
def test_not_in_a_container(cgroup: str) -> None:
    assert detect(cgroup, {"NSpid": "4100"}) is None


def test_shared_pid_namespace_has_no_inner_pid(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    row = fake.add(4200, cgroup=v2(f"/system.slice/docker-{ID}.scope"))  # --pid=host
    (e,) = Enricher(ProcFS(str(fake.root)), my_uid=0).update([row])
    assert e.container is not None and e.container.pid_in_container is None


def test_container_known_for_other_users_without_reading_details(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    row = fake.add(4300, uid=1234, cgroup=v2(f"/system.slice/docker-{ID}.scope"), nspid=(1,))
    (e,) = Enricher(ProcFS(str(fake.root)), my_uid=1000).update([row])
    assert not e.same_user and e.container is not None and e.container.id == ID


def test_hostile_container_names_are_sanitised() -> None:
    found = detect(v1("/lxc/evil\x1b[2Jname"), None)
    assert found is not None and found.id == "evilname"
