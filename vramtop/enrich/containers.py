"""Which container a process runs in, from /proc/PID/cgroup, and its PID inside it (NSpid).

Data flow: ``Enricher`` reads ``cgroup`` and ``status`` (both world-readable, so this is known for
every user's processes) -> :func:`detect` -> ``Enrichment.container``. Pure functions over text.

Recognised (cgroup v1 ``N:controllers:/path`` lines and v2 ``0::/path``, cgroupfs and systemd
drivers):

* Kubernetes: ``kubepods`` in the path, with the pod UID (``pod<uid>``; systemd writes its dashes
  as underscores) and the container ID of whichever runtime runs it;
* podman: ``libpod-<id>.scope`` (root and rootless);
* containerd: ``cri-containerd-<id>.scope``, ``nerdctl-<id>.scope``, ``/default/<id>``;
* CRI-O: ``crio-<id>.scope``;
* docker: ``/docker/<id>``, ``docker-<id>.scope``;
* LXC / LXD: ``/lxc/<name>``, ``/lxc.payload.<name>``.

A process in a container's cgroup namespace sees only ``0::/`` and is reported as not in a
container: the path tells nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from vramtop.enrich.model import Container
from vramtop.sanitize import clean

_HEX_ID = r"[0-9a-f]{64}"
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_K8S_CONTAINER = re.compile(
    rf"/(?:cri-containerd-|crio-|docker-|cri-dockerd-)?({_HEX_ID})(?:\.scope)?(?:/|$)"
)
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"libpod-({_HEX_ID})(?:\.scope)?(?:/|$)"), "podman"),
    (re.compile(rf"(?:cri-containerd|nerdctl)-({_HEX_ID})(?:\.scope)?(?:/|$)"), "containerd"),
    (re.compile(rf"^/(?:default|k8s\.io)/({_HEX_ID})(?:/|$)"), "containerd"),
    (re.compile(rf"crio-({_HEX_ID})(?:\.scope)?(?:/|$)"), "cri-o"),
    (re.compile(rf"(?:/docker/|docker-)({_HEX_ID})(?:\.scope)?(?:/|$)"), "docker"),
    (re.compile(r"^/lxc(?:\.payload)?[./]([^/]+)"), "lxc"),
)


def cgroup_paths(text: str) -> list[str]:
    """The cgroup path of every line (v2 first: it is the one the kernel schedules by)."""
    v2: list[str] = []
    v1: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2]:
            (v2 if parts[0] == "0" and parts[1] == "" else v1).append(parts[2])
    return v2 + v1


def from_path(path: str) -> Container | None:
    """The container one cgroup path names, if any."""
    if "kubepods" in path:
        pod = _POD.search(path)
        ctr = _K8S_CONTAINER.search(path)
        if pod is None and ctr is None:
            return None
        return Container(
            "kubernetes",
            ctr.group(1) if ctr else "",
            pod_uid=pod.group(1).replace("_", "-") if pod else "",
        )
    for pattern, runtime in _RULES:
        match = pattern.search(path)
        if match is not None:
            name = match.group(1)
            if runtime == "lxc" and (name.startswith("monitor") or not name):
                continue
            return Container(runtime, clean(name, 128))
    return None


def ns_pid(status: Mapping[str, str] | None) -> int | None:
    """The PID inside the innermost PID namespace (``NSpid``'s last entry) when it differs from
    the outer one; None when the process shares our PID namespace or it is unknown."""
    if not status:
        return None
    fields = status.get("NSpid", "").split()
    if len(fields) < 2:
        return None
    try:
        return int(fields[-1])
    except ValueError:
        return None


def detect(cgroup_text: str | None, status: Mapping[str, str] | None = None) -> Container | None:
    """The container of a process from its cgroup file and status (``NSpid``)."""
    if not cgroup_text:
        return None
    best: Container | None = None
    for path in cgroup_paths(cgroup_text):
        found = from_path(path)
        if found is None:
            continue
        if found.id:
            best = found
            break
        best = best or found  # a pod without a container ID: keep looking for the ID
    if best is None:
        return None
    inner = ns_pid(status)
    if inner is None:
        return best
    return Container(best.runtime, best.id, best.pod_uid, inner)
