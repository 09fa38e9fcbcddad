"""Where deep-mode sockets live, and the checks that make that place private.

Used by both sides: the reporter (``reporter.py``) creates its socket here, the monitor's reader
(``reader.py``) lists the directory. The security model (design.md) fixes the place:
``$XDG_RUNTIME_DIR/vramtop/`` (mode 0700), or, without a usable runtime directory, a per-UID
directory ``vramtop-<uid>`` under the temp dir. A directory is used only when it is a real
directory (not a symlink), owned by the UID it is for, and not readable, writable or searchable
by anyone else; a directory that fails the check is never "repaired" (someone else made it), it
is refused with a reason. A socket is ``<pid>.sock``.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile

SUFFIX = ".sock"
SOCKET_NAME = re.compile(r"^([1-9][0-9]{0,9})\.sock$")
# sun_path is 108 bytes on Linux; a longer path cannot be bound, so the fallback is used.
MAX_SOCKET_PATH = 107


class UnsafeDirectory(Exception):
    """The directory exists but is not private to the user: never used, never changed."""


def check_private(path: str, uid: int) -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` is a real directory owned by ``uid`` that
    only its owner can enter."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if st.st_uid != uid:
        raise UnsafeDirectory(f"{path} belongs to UID {st.st_uid}, not {uid}")
    if st.st_mode & 0o077:
        raise UnsafeDirectory(f"{path} is open to others (mode {stat.S_IMODE(st.st_mode):o})")


def fallback_dir(uid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"vramtop-{uid}")


def candidates(uid: int | None = None, env: dict[str, str] | None = None) -> list[str]:
    """Directories for ``uid``'s sockets, preferred first: the runtime directory's, then the
    temp-dir fallback. The monitor reads both (a reporter started from a shell without
    ``XDG_RUNTIME_DIR`` is still found)."""
    uid = os.geteuid() if uid is None else uid
    env = dict(os.environ) if env is None else env
    out = []
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        out.append(os.path.join(runtime, "vramtop"))
    out.append(fallback_dir(uid))
    return out


def _runtime_usable(parent: str, uid: int) -> bool:
    try:
        st = os.stat(parent)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and os.access(parent, os.W_OK | os.X_OK)


def ensure_dir(uid: int | None = None, env: dict[str, str] | None = None) -> str:
    """The directory this process's socket goes into, created 0700 when missing.

    Raises :class:`UnsafeDirectory` (with the reasons) when none is private and usable."""
    uid = os.geteuid() if uid is None else uid
    reasons = []
    for path in candidates(uid, env):
        parent = os.path.dirname(path)
        if path != fallback_dir(uid) and not _runtime_usable(parent, uid):
            reasons.append(f"{parent} is not a runtime directory of UID {uid}")
            continue
        if len(socket_path(path, 2**22)) > MAX_SOCKET_PATH:
            reasons.append(f"{path} is too long for a socket path")
            continue
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        try:
            check_private(path, uid)
        except (UnsafeDirectory, OSError) as exc:
            reasons.append(str(exc))
            continue
        return path
    raise UnsafeDirectory("; ".join(reasons))


def socket_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{pid}{SUFFIX}")


def pid_of(name: str) -> int | None:
    """The PID a socket file name claims, or None when the name is not ``<pid>.sock``."""
    m = SOCKET_NAME.match(name)
    return int(m.group(1)) if m else None
