"""Which loopback port, if any, may be asked for a GPU process's server metrics.

Where it sits: ``scrape/core.py`` calls :meth:`Discovery.targets` for each serving GPU process
once per scrape round; what comes back (candidate listeners, best first, or a note saying why there
is none) decides what ``scrape/fetch.py`` may connect to. Reads /proc only, through
:class:`~vramtop.enrich.procfs.ProcFS` (bounded, never raising).

The rules (design.md, security model):

* The **server tree** of a GPU process: the process itself, its ancestors as long as they are
  inference servers too (``vllm serve`` above ``VLLM::EngineCore``, ``text-generation-launcher``
  above a shard, ``ollama serve`` above its runner), up to the topmost one — the server root — and
  all of that root's descendants (TGI's router is the shard's sibling). Only processes of the GPU
  process's UID are part of it.
* A listening socket (from ``/proc/net/tcp`` and ``tcp6``) counts only when a process of the tree
  holds it (its inode is among the process's fds) and the socket's UID is the GPU process's UID;
  when vramtop does not run as root that UID must also be vramtop's own.
* Its port must be in ``scraping.allowed_ports`` — or be the port a runner's own command line
  names (``--port N``) when the runner's parent is a recognised server (Ollama, a llama.cpp
  router) and the runner itself holds that socket.
* It must be reachable on loopback: a socket bound to 0.0.0.0 or 127.0.0.1 is asked on
  127.0.0.1, one bound to ``::`` or ``::1`` on ``::1``; one bound to another address is not asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from vramtop.enrich import framework as fw
from vramtop.enrich.procfs import ProcFS
from vramtop.identity import same_process
from vramtop.messages import ProcessIdentity

_LISTEN = "0A"
NET_MAX = 4 * 1024 * 1024  # bytes of /proc/net/tcp read (about 25000 sockets)
TREE_MAX = 512  # processes in one server tree
DEPTH_MAX = 32  # ancestors walked up
RUNNER_PARENTS = frozenset({fw.OLLAMA, fw.LLAMA_CPP})


@dataclass(frozen=True, slots=True)
class Listener:
    address: str  # as bound: "0.0.0.0", "127.0.0.1", "::", "::1", ...
    port: int
    uid: int
    inode: int

    @property
    def loopback_host(self) -> str | None:
        """The loopback address to ask, or None when the socket is not bound to loopback."""
        a = self.address
        # Only the two addresses the security model allows are asked: a socket bound to
        # 127.0.0.2 does not answer on 127.0.0.1.
        if a in ("0.0.0.0", "127.0.0.1", "::ffff:0.0.0.0", "::ffff:127.0.0.1"):
            return "127.0.0.1"
        if a in ("::", "::1"):
            return "::1"
        return None


@dataclass(frozen=True, slots=True)
class Candidate:
    host: str
    port: int
    owner_pid: int
    relation: str  # "itself", "parent", "ancestor", "in its server tree"


@dataclass(frozen=True, slots=True)
class ServerTree:
    root_pid: int
    root_start_ticks: int
    kind: str  # the serving framework of the tree ("" = not a server)
    members: tuple[int, ...]  # the GPU process first, then ancestors, then the rest
    # Descendants of the root that run as another user: not part of the tree, named in notes.
    foreign: tuple[tuple[int, int], ...] = ()  # (pid, uid)


@dataclass
class Found:
    """Discovery's answer for one GPU process."""

    tree: ServerTree | None
    candidates: list[Candidate] = field(default_factory=list)
    note: str = ""


def _hex_address(text: str) -> str:
    """/proc/net/tcp's little-endian hex address -> its text form."""
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return ".".join(str(b) for b in raw[::-1])
    # IPv6: four 32-bit words, each in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    import ipaddress

    addr = ipaddress.IPv6Address(words)
    mapped = addr.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else str(addr)


def parse_net(text: str) -> list[Listener]:
    """The listening sockets of one /proc/net/tcp{,6} table."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10 or parts[3] != _LISTEN:
            continue
        try:
            host, port = parts[1].rsplit(":", 1)
            out.append(Listener(_hex_address(host), int(port, 16), int(parts[7]), int(parts[9])))
        except ValueError:
            continue
    return out


class Discovery:
    """One instance per scrape round: caches the process table and socket tables it reads."""

    def __init__(self, procfs: ProcFS | None = None, my_uid: int | None = None) -> None:
        self.proc = procfs or ProcFS()
        self.my_uid = os.geteuid() if my_uid is None else my_uid
        self._children: dict[int, list[int]] | None = None
        self._listeners: dict[int, Listener] | None = None
        self._info: dict[int, tuple[int, int, tuple[str, ...], str] | None] = {}

    # -- the process table ---------------------------------------------------------------------

    def info(self, pid: int) -> tuple[int, int, tuple[str, ...], str] | None:
        """(ppid, uid, argv, comm) of a process, None when gone; argv only for readable ones."""
        if pid in self._info:
            return self._info[pid]
        got = None
        st = self.proc.stat(pid)
        status = self.proc.status(pid) if st is not None else None
        if st is not None and status is not None:
            try:
                uid = int(status.get("Uid", "-1").split()[0])
            except (IndexError, ValueError):
                uid = -1
            readable = self.my_uid == 0 or uid == self.my_uid
            argv = (self.proc.cmdline(pid) or ()) if readable else ()
            comm = self.proc.comm(pid) if readable else ""
            got = (st.ppid, uid, argv, comm)
        self._info[pid] = got
        return got

    def is_alive(self, identity: ProcessIdentity) -> bool:
        """Whether ``identity``'s PID still belongs to that process (design principle 8)."""
        st = self.proc.stat(identity.pid)
        if st is None:
            return False
        now = ProcessIdentity(identity.pid, self.proc.start_time(st))
        return same_process(identity, now)

    def children(self) -> dict[int, list[int]]:
        if self._children is None:
            kids: dict[int, list[int]] = {}
            for name in self.proc.listdir(self.proc.root):
                if name.isdigit():
                    st = self.proc.stat(int(name))
                    if st is not None:
                        kids.setdefault(st.ppid, []).append(int(name))
            self._children = kids
        return self._children

    def kind_of(self, pid: int) -> str:
        got = self.info(pid)
        if got is None:
            return ""
        detection = fw.from_argv(got[2], got[3])
        return detection.framework if detection is not None and detection.serving else ""

    def tree(self, pid: int, kind_hint: str = "") -> ServerTree | None:
        """The server tree of GPU process ``pid`` (None when the process is gone)."""
        me = self.info(pid)
        if me is None:
            return None
        uid = me[1]
        kind = kind_hint if kind_hint in fw.SERVING else self.kind_of(pid)
        chain = [pid]
        cur = me
        for _ in range(DEPTH_MAX):
            ppid = cur[0]
            if ppid <= 1:
                break
            parent = self.info(ppid)
            if parent is None or parent[1] != uid:
                break
            parent_kind = self.kind_of(ppid)
            if not parent_kind:
                break
            kind = kind or parent_kind
            chain.append(ppid)
            cur = parent
        root = chain[-1]
        if chain[-1] != pid:
            kind = self.kind_of(root) or kind
        members = list(chain)
        seen = set(members)
        kids = self.children()
        foreign: list[tuple[int, int]] = []
        todo = [root]
        while todo and len(members) < TREE_MAX:
            for child in kids.get(todo.pop(), []):
                if child in seen:
                    continue
                seen.add(child)
                got = self.info(child)
                if got is None:
                    continue
                if got[1] != uid:
                    foreign.append((child, got[1]))
                    continue
                members.append(child)
                todo.append(child)
        st = self.proc.stat(root)
        return ServerTree(
            root, st.start_ticks if st else 0, kind, tuple(members), tuple(foreign[:16])
        )

    # -- sockets -------------------------------------------------------------------------------

    def listeners(self) -> dict[int, Listener]:
        """inode -> listening TCP socket, IPv4 and IPv6, as this network namespace has them."""
        if self._listeners is None:
            found: dict[int, Listener] = {}
            for table in ("tcp", "tcp6"):
                data = self.proc.read_path(f"{self.proc.root}/net/{table}", NET_MAX)
                if data:
                    for lst in parse_net(data.decode("ascii", "replace")):
                        found[lst.inode] = lst
            self._listeners = found
        return self._listeners

    def socket_inodes(self, pid: int) -> set[int]:
        out = set()
        for _path, target in self.proc.fd_targets(pid):
            if target.startswith("socket:[") and target.endswith("]"):
                try:
                    out.add(int(target[8:-1]))
                except ValueError:
                    continue
        return out

    def runner_port(self, pid: int) -> int | None:
        """The ``--port N`` of a runner whose parent is a recognised Ollama / llama.cpp server."""
        got = self.info(pid)
        if got is None or self.kind_of(got[0]) not in RUNNER_PARENTS:
            return None
        argv = fw.tokens(got[2])
        for i, word in enumerate(argv):
            value = argv[i + 1] if word == "--port" and i + 1 < len(argv) else None
            if word.startswith("--port="):
                value = word.split("=", 1)[1]
            if value is not None and value.isdigit() and 0 < int(value) < 65536:
                return int(value)
        return None

    def targets(self, pid: int, allowed_ports: Iterable[int], kind_hint: str = "") -> Found:
        """Candidate listeners for GPU process ``pid``, best first, or a note saying why none."""
        tree = self.tree(pid, kind_hint)
        if tree is None:
            return Found(None, note="process gone")
        if not tree.kind:
            return Found(tree, note="not a recognised inference server")
        me = self.info(pid)
        gpu_uid = me[1] if me is not None else -1
        if self.my_uid != 0 and gpu_uid != self.my_uid:
            return Found(tree, note="another user's server: not read (security model)")
        allowed = set(allowed_ports)
        listeners = self.listeners()
        chain_len = self._chain_length(tree, pid)
        found: list[tuple[int, Candidate]] = []
        refused: list[str] = []
        for rank, member in enumerate(tree.members):
            inodes = self.socket_inodes(member)
            if not inodes:
                continue
            own_port = self.runner_port(member)
            for inode in sorted(inodes):
                lst = listeners.get(inode)
                if lst is None:
                    continue
                if lst.port not in allowed and lst.port != own_port:
                    continue
                if lst.uid != gpu_uid or (self.my_uid != 0 and lst.uid != self.my_uid):
                    refused.append(f"port {lst.port} belongs to UID {lst.uid}: not read")
                    continue
                host = lst.loopback_host
                if host is None:
                    refused.append(f"port {lst.port} listens on {lst.address} only, not loopback")
                    continue
                relation = (
                    "itself"
                    if member == pid
                    else "parent"
                    if rank == 1 and chain_len > 1
                    else "ancestor"
                    if rank < chain_len
                    else "in its server tree"
                )
                order = rank
                if tree.kind == fw.OLLAMA and member == tree.root_pid:
                    order = -1  # /api/ps is the serve process's
                found.append((order, Candidate(host, lst.port, member, relation)))
        found.sort(key=lambda x: (x[0], x[1].port))
        unique: list[Candidate] = []
        for _, cand in found:
            if all((c.host, c.port) != (cand.host, cand.port) for c in unique):
                unique.append(cand)
        note = ""
        if not unique:
            refused += self._foreign(tree, allowed, listeners)
            note = "; ".join(dict.fromkeys(refused)) or self._why_none(tree, allowed)
        return Found(tree, unique, note)

    def _foreign(
        self, tree: ServerTree, allowed: set[int], listeners: dict[int, Listener]
    ) -> list[str]:
        """Notes for allowed-port listeners held by another user's process under the root (its
        fds are readable only when vramtop runs as root)."""
        out = []
        for pid, uid in tree.foreign:
            for inode in sorted(self.socket_inodes(pid)):
                lst = listeners.get(inode)
                if lst is not None and lst.port in allowed:
                    out.append(f"port {lst.port} is held by PID {pid} of UID {uid}: not read")
        return out

    def _chain_length(self, tree: ServerTree, pid: int) -> int:
        """How many of the tree's first members are the GPU process and its ancestors."""
        n = 1
        cur = self.info(pid)
        for member in tree.members[1:]:
            if cur is None or cur[0] != member:
                break
            n += 1
            cur = self.info(member)
        return n

    def _why_none(self, tree: ServerTree, allowed: set[int]) -> str:
        ports = sorted(allowed)
        others = sorted({lst.port for lst in self.listeners().values() if lst.port in allowed})
        if others:
            return (
                f"port {', '.join(map(str, others))} listens, but not from this server's "
                "process tree: not read"
            )
        shown = ", ".join(map(str, ports[:8]))
        return f"no listening socket on an allowed port ({shown}) in the server tree"
