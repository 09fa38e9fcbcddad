"""Hostile input: what the world can throw at a monitor that stays open for weeks.

Real child processes whose command lines carry escape sequences, bidi overrides, CJK, emoji and a
megabyte of arguments (a ``--demo`` scenario written by the test); garbage, huge, nested and
never-ending config files, given with ``--config`` and swapped in before a SIGHUP; a hundred
SIGHUPs in a second; resize storms and terminals of 1x1 and 500x200; key garbage; /proc entries
vramtop may not read. Each test checks what a user would notice: nothing crashes (the same actor
processes before and after, no restart on the status line), nothing leaks onto the terminal (no
escape sequence or traceback text in the emulated screen, the window title untouched), and every
refusal is one line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest
from tui import VRAMTOP, Tui

FAST = ["--refresh-rate", "0.5"]

# Fragments that would be on screen if an escape sequence had been printed as text, or had been
# cut in half by a cleaner that only knows some of them.
ESCAPE_DEBRIS = ("\x1b", "[2J", "[31m", "]0;", "]8;;", "$qm", "\x9b", "\u202e", "\u2066", "\u200b")
PWNED = "pwned"  # the window title an OSC 0 in a command line would set

HOSTILE_PROCESSES: dict[str, list[str]] = {
    "escapes": [
        "python",
        "\x1b[2J\x1b[H\x1b]0;pwned\x07clear.py",
        "\x1b[31mred\x1b[0m",
        "\x1b]8;;http://example.invalid\x1b\\link\x1b]8;;\x1b\\",
        "\x1bP1$qm\x1b\\dcs",
        "\x9b6nc1",
        "tab\there",
    ],
    "bidi": ["python", "\u202eyp.exe\u202c", "\u2066iso\u2069", "zero\u200bwidth\ufeff"],
    "cjk": ["python", "/模型/训练🚀.py", "--名前=テスト", "👩\u200d💻"],
    # 10 x 100 KB: a 1 MB command line (one argument may be at most 128 KiB on Linux).
    "huge": ["python", "huge.py", *["A" * 100_000 for _ in range(10)]],
}
SHOWN = {
    "escapes": "python clear.py red link dcs c1 tab here",
    "bidi": "python yp.exe iso zerowidth",
    "cjk": "python /模型/训练🚀.py --名前=テスト 👩💻",
    "huge": "python -c",  # setproctitle refuses a 1 MB title: the real argv is what /proc has
}


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _scenario(path: Path, processes: dict[str, list[str]], synthetic: int = 1) -> Path:
    lines = [
        'name = "hostile"',
        'description = "hostile command lines"',
        "seed = 1",
        "[[gpu]]",
        'name = "NVIDIA L4"',
        "memory_mib = 23034",
    ]
    for i, (name, argv) in enumerate(processes.items()):
        lines += [
            "[[process]]",
            f'name = "{name}"',
            "gpu = 0",
            "argv = [" + ", ".join(_toml_string(a) for a in argv) + "]",
            f'memory = {{ curve = "constant", mib = {1000 * (i + 1)} }}',
        ]
    for i in range(synthetic):
        # No argv: a PID /proc knows nothing of (a process in another PID namespace).
        lines += [
            "[[process]]",
            f'name = "ghost{i}"',
            "gpu = 0",
            'memory = { curve = "constant", mib = 100 }',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".config").mkdir()
    return tmp_path


def _cells(tui: Tui) -> str:
    return "".join(c.data for row in tui.screen.buffer.values() for c in row.values())


def assert_screen_clean(tui: Tui, status_quotes: bool = False) -> None:
    """Nothing but vramtop's own frame reached the terminal. With ``status_quotes`` the status
    line may quote a refused value, escaped (``"\\u001b[2J"`` as text is no escape)."""
    screen = tui.text()
    cells = _cells(tui)
    if status_quotes:
        cells = "".join(
            c.data for y in range(tui.screen.lines - 1) for c in tui.screen.buffer[y].values()
        )
        assert "\x1b" not in _cells(tui)
    for debris in ESCAPE_DEBRIS:
        assert debris not in cells, f"{debris!r} on screen:\n{screen}"
    assert PWNED not in (tui.screen.title or "") and PWNED not in cells
    assert "Traceback" not in screen and b"Traceback" not in bytes(tui.raw)
    assert "restarted" not in screen and "FAILED" not in screen, screen


def assert_same_actors(tui: Tui, before: dict[str, int]) -> None:
    assert len(before) >= 4, before
    assert tui.actors() == before, "an actor died and was restarted"
    assert tui.child.isalive()


def quit_cleanly(tui: Tui) -> None:
    """q ends the program with status 0, and the log printed after the terminal is restored
    holds no traceback either."""
    tui.send("q")
    assert tui.wait_exit() == 0, tui.text()
    assert b"Traceback" not in bytes(tui.raw)


def _status(tui: Tui) -> str:
    return tui.text().splitlines()[-1]


# -- command lines -------------------------------------------------------------------------------


def test_hostile_command_lines_are_shown_clean_and_break_nothing(home: Path) -> None:
    scenario = _scenario(home / "hostile.toml", HOSTILE_PROCESSES)
    tui = Tui(["--demo", str(scenario), *FAST], cols=160, rows=40, home=home)
    try:
        screen = tui.wait_for(lambda s: all(v in s for v in SHOWN.values()), timeout=30)
        before = tui.actors()
        rows = [ln for ln in screen.splitlines() if re.match(r"\s+0\s+\d+\s", ln)]
        assert len(rows) == len(HOSTILE_PROCESSES) + 1, "one row each, the 1 MB one included"
        assert not any("AAAA" in ln for ln in rows), "cut at 256 characters, before the As"
        assert_screen_clean(tui)
        # The detail panel of every row (the 1 MB command line wrapped over a few lines, the
        # CJK one measured in cells), then back to the table.
        tui.send("\x1b[H")
        for _ in range(5):
            tui.send("d")
            tui.wait_for("Esc closes", timeout=5)
            assert_screen_clean(tui)
            tui.send("\x1b")
            tui.wait_for(lambda s: "Esc closes" not in s, timeout=5)
            tui.send("\x1b[B")
        # A filter typed in CJK matches the CJK command line only.
        tui.send("/训练")
        tui.send("\r")
        tui.wait_for(lambda s: SHOWN["cjk"] in s and SHOWN["bidi"] not in s, timeout=5)
        assert_screen_clean(tui)
        assert_same_actors(tui, before)
        quit_cleanly(tui)
    finally:
        tui.close()


def test_once_output_of_hostile_command_lines_is_clean(home: Path) -> None:
    scenario = _scenario(home / "hostile.toml", HOSTILE_PROCESSES)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    as_json = subprocess.run(
        [*VRAMTOP, "--demo", str(scenario), "--once", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    commands = sorted(p["command"] or "" for g in doc["gpus"] for p in g["processes"])
    assert len(commands) == len(HOSTILE_PROCESSES) + 1  # and the PID /proc knows nothing of
    assert [c for c in commands if c in SHOWN.values()] == sorted(
        v for v in SHOWN.values() if v != SHOWN["huge"]
    )
    assert all(len(c) <= 256 for c in commands)
    as_text = subprocess.run(
        [*VRAMTOP, "--demo", str(scenario), "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert as_text.returncode == 0, as_text.stderr
    for out in (as_json.stdout, as_text.stdout):
        assert not any(d in out for d in ESCAPE_DEBRIS)
    assert SHOWN["cjk"] in as_text.stdout and SHOWN["escapes"] in as_text.stdout
    assert as_json.stderr == as_text.stderr == ""


# -- config files --------------------------------------------------------------------------------


def _garbage_configs(root: Path) -> dict[str, tuple[Path, str]]:
    """Name -> (a config vramtop must refuse, a fragment of its one-line reason)."""
    root.mkdir(exist_ok=True)
    files: dict[str, tuple[str | bytes, str]] = {
        "binary": (bytes(range(256)) * 64, "not valid UTF-8"),
        "huge": ("# padding\n" * 120_000, "larger than"),
        "nested": ("a = " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
        "nested value": (
            "[display]\ntheme = " + "[" * 300 + "]" * 300 + "\n",
            "display.theme must be a string",
        ),
        "nul": (b"[display]\x00theme = 'dark'\n", "invalid TOML"),
        "escapes in a value": (
            '[display]\ntheme = "\\u001b[2J\\u001b]0;pwned\\u0007"\n',
            "display.theme must be one of",
        ),
        "escapes in a key": ('[display]\n"\\u001b[31mkey" = 1\n', "unknown key"),
        "many keys": ("".join(f"[s{i}]\n" for i in range(50_000)), "unknown section"),
    }
    out: dict[str, tuple[Path, str]] = {}
    for i, (name, (content, reason)) in enumerate(files.items()):
        path = root / f"garbage{i}.toml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        out[name] = (path, reason)
    out["directory"] = (root, "is a directory")
    out["device"] = (Path("/dev/zero"), "not a regular file")
    return out


def _one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


def test_garbage_config_files_are_refused_in_one_line(home: Path) -> None:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    for name, (path, reason) in _garbage_configs(home / "configs").items():
        done = subprocess.run(
            [*VRAMTOP, "--demo", "small", "--once", "--config", str(path)],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        line = _one_line(done.stderr)
        assert done.returncode == 2 and done.stdout == "", (name, done)
        assert line.startswith("vramtop: ") and reason in line, (name, line)
        # A refused value may be quoted, escaped as TOML writes it; no raw control character.
        assert not any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in line), (name, line)
        assert len(line) < 300, (name, line)


def test_a_fifo_as_config_does_not_hang(home: Path) -> None:
    fifo = home / "config.fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    # Not a regular file: refused at once, in one line, whoever holds it. Before, opening it
    # blocked vramtop (and, on SIGHUP, its supervisor) forever.
    done = subprocess.run(
        [*VRAMTOP, "--demo", "small", "--once", "--config", str(fifo)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 2 and "not a regular file" in _one_line(done.stderr), done
    # A writer that holds it open without writing: refused the same way, without a wait.
    holder = subprocess.Popen(["bash", "-c", f"exec 3>{fifo}; sleep 20"])
    try:
        time.sleep(0.3)
        done = subprocess.run(
            [*VRAMTOP, "--demo", "small", "--once", "--config", str(fifo)],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert done.returncode == 2 and "not a regular file" in _one_line(done.stderr), done
    finally:
        holder.kill()
        holder.wait()


def test_sighup_with_a_garbage_config_keeps_the_running_one_and_says_so(home: Path) -> None:
    cfg = home / "vramtop.toml"
    cfg.write_text('[display]\ntheme = "nord"\n')
    tui = Tui(["--demo", "small", "--config", str(cfg), *FAST], cols=200, rows=40, home=home)
    try:
        tui.wait_for("python train_small.py")
        tui.wait_for("theme nord")
        before = tui.actors()
        garbage = _garbage_configs(home / "configs")
        for name in ("binary", "huge", "nested", "escapes in a value", "many keys"):
            path, reason = garbage[name]
            os.replace(path, cfg)
            os.kill(tui.pid, signal.SIGHUP)
            tui.wait_for(lambda s, r=reason: "config not reloaded" in s and r in s, timeout=10)
            status = _status(tui)
            assert "config not reloaded" in status and reason in status, (name, tui.text())
            assert "theme nord" in tui.text().splitlines()[0], "the running config stays"
            assert_screen_clean(tui, status_quotes=True)
        # A FIFO swapped in for the file: the supervisor must not block opening it (it did,
        # for good: no more frames, no heartbeat checks, no restarts).
        cfg.unlink()
        os.mkfifo(cfg)
        os.kill(tui.pid, signal.SIGHUP)
        tui.wait_for("not a regular file", timeout=10)  # said, and the running config stays
        cfg.unlink()
        cfg.write_text('[display]\ntheme = "dracula"\n')
        os.kill(tui.pid, signal.SIGHUP)
        tui.wait_for("theme dracula", timeout=10)
        assert_same_actors(tui, before)
        assert_screen_clean(tui)
        quit_cleanly(tui)
    finally:
        tui.close()


def test_a_sighup_storm_leaves_exactly_the_last_valid_config(home: Path) -> None:
    cfg = home / "vramtop.toml"
    cfg.write_text('[display]\ntheme = "nord"\n')
    tui = Tui(["--demo", "small", "--config", str(cfg), *FAST], cols=160, rows=40, home=home)
    try:
        tui.wait_for("python train_small.py")
        tui.wait_for("theme nord")
        before = tui.actors()
        contents = [
            '[display]\ntheme = "light"\n',
            "[display\ntheme = ",  # broken
            '[display]\ntheme = "solarized"\n',
            "[general]\nrefresh_rate = 99\n",  # out of range
        ]
        tmp = home / "next.toml"
        start = time.monotonic()
        for i in range(100):
            tmp.write_text(contents[i % len(contents)])
            os.replace(tmp, cfg)
            os.kill(tui.pid, signal.SIGHUP)
            time.sleep(0.008)
        storm_s = time.monotonic() - start
        tmp.write_text('[display]\ntheme = "catppuccin"\n')
        os.replace(tmp, cfg)
        os.kill(tui.pid, signal.SIGHUP)
        tui.wait_for(lambda s: "theme catppuccin" in s and "config reloaded" in s, timeout=20)
        # The program still answers keys, and still updates.
        tui.send("?")
        tui.wait_for("keys", timeout=5)
        tui.send("\x1b")
        first = tui.text().splitlines()[0]
        tui.wait_for(lambda s: s.splitlines()[0] != first, timeout=5)
        assert "theme catppuccin" in tui.text().splitlines()[0], "no late reload undid it"
        assert storm_s < 5, f"100 signals took {storm_s:.1f} s to send: not a storm"
        assert_same_actors(tui, before)
        assert_screen_clean(tui)
        quit_cleanly(tui)
    finally:
        tui.close()


# -- terminals -----------------------------------------------------------------------------------


def _resize(tui: Tui, cols: int, rows: int) -> None:
    if cols and rows:
        tui.resize(cols, rows)
    else:
        tui.child.setwinsize(rows, cols)  # 0x0: what some terminals report before they know


def test_resize_storm_and_extreme_terminal_sizes(home: Path) -> None:
    tui = Tui(["--demo", "small", *FAST], cols=1, rows=1, home=home)
    try:
        tui.wait_for("t", timeout=15)  # "too small…" cut to the one cell there is
        deadline = time.monotonic() + 15
        while len(tui.actors()) < 4 and time.monotonic() < deadline:
            tui.pump(0.2)
        before = tui.actors()
        sizes: Sequence[tuple[int, int]] = [
            (1, 1), (500, 200), (0, 0), (40, 10), (39, 9), (80, 24), (2, 50), (300, 3), (1, 200),
        ]  # fmt: skip
        for i in range(150):
            _resize(tui, *sizes[i % len(sizes)])
            tui.pump(0.01)
        tui.resize(500, 200)
        screen = tui.wait_for(
            lambda s: "python train_small.py" in s and "q quit" in s.splitlines()[-1], timeout=15
        )
        lines = screen.splitlines()
        assert len(lines) == 200 and len(lines[0]) == 500
        assert re.search(r"\d\d:\d\d:\d\d $", lines[0]), "the clock at the right edge"
        tui.resize(40, 10)
        tui.wait_for(lambda s: "train_small" in s or "GPU 0" in s, timeout=10)
        tui.resize(120, 40)
        screen = tui.wait_for(lambda s: "COMMAND" in s and "python serve.py" in s, timeout=10)
        assert "q quit" in screen.splitlines()[-1]
        assert_same_actors(tui, before)
        assert_screen_clean(tui)
        quit_cleanly(tui)
    finally:
        tui.close()


def test_a_500x200_terminal_from_the_start(home: Path) -> None:
    scenario = _scenario(home / "hostile.toml", HOSTILE_PROCESSES)
    tui = Tui(["--demo", str(scenario), *FAST], cols=500, rows=200, home=home)
    try:
        tui.wait_for(lambda s: all(v in s for v in SHOWN.values()), timeout=30)
        before = tui.actors()
        tui.pump(1.5)
        assert_same_actors(tui, before)
        assert_screen_clean(tui)
        quit_cleanly(tui)
    finally:
        tui.close()


def test_key_garbage_changes_nothing_it_should_not(home: Path) -> None:
    tui = Tui(["--demo", "small", *FAST], cols=120, rows=40, home=home)
    try:
        tui.wait_for("python train_small.py")
        before = tui.actors()
        # Everything but the keys that quit, kill, suspend or pause the terminal: escape
        # sequences cut short, unknown CSI and SS3 keys, mouse reports, a bracketed paste of
        # control bytes, invalid UTF-8, a long run of printable noise.
        garbage = [
            # A key sequence cut short, its rest (read by blessed itself) not UTF-8: this killed
            # the render process.
            b"\x1bO",
            b"\xff\xfe\xc3(",
            b"\x1b[",
            b"\x80\x81",
            b"\x1b",
            b"\xe2\x82",
            b"\x1b[999;999;999~",
            b"\x1b[<0;500;500M\x1b[<0;1;1m",
            b"\x1b[200~\x00\x01\x07\x08\x7f\x1b[201~",
            b"\xff\xfe\xc3(\xe2\x82",
            b"\x1b]0;pwned\x07",
            bytes(range(0x20, 0x7F)).translate(None, b"qksKQ\\").replace(b"/", b"") * 20,
            "训练🚀".encode() * 50,
        ]
        for chunk in garbage:
            tui.child.send(chunk)
            tui.pump(0.05)
        tui.pump(0.5)
        # Esc closes what the noise opened (help, detail), one at a time: Esc keys that reach
        # the program together would read as Alt+Esc.
        for _ in range(4):
            if "Esc closes" not in tui.text():
                break
            tui.send("\x1b")
            tui.pump(0.5)
        tui.wait_for(lambda s: "Esc closes" not in s and "python serve.py" in s, timeout=10)
        assert_same_actors(tui, before)
        assert_screen_clean(tui)
        quit_cleanly(tui)
    finally:
        tui.close()


# -- /proc ---------------------------------------------------------------------------------------

_PROBE = textwrap.dedent(
    """
    import json, sys
    from vramtop.enrich.enricher import Enricher
    from vramtop.messages import ProcessRow
    from vramtop.enrich.procinfo import ProcessTable
    pids = [int(p) for p in sys.argv[1:]]
    facts = ProcessTable().update(pids)
    rows = [ProcessRow(f.identity, 0, i, f.user, f.command, f.same_user)
            for i, f in enumerate(facts[p] for p in pids)]
    known = {e.identity.pid: e for e in Enricher().update(rows)}
    out = {}
    for p in pids:
        f, e = facts[p], known.get(p)
        out[p] = {"command": f.command, "user": f.user, "start": f.identity.start_time,
                  "files": [m.path for m in e.model_files] if e else None}
    print(json.dumps(out))
    """
)
NOBODY = 65534
# Root without the capabilities that bypass /proc permissions: root in a container without
# CAP_SYS_PTRACE, as many are. A process of another user keeps its fd/ and environ to itself.
NO_PROC_CAPS = ["setpriv", "--bounding-set=-sys_ptrace,-dac_override,-dac_read_search", "--"]


def _as_nobody() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)


def _probe(pids: Sequence[int], prefix: Sequence[str], cwd: Path) -> dict[int, dict[str, object]]:
    src = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _PROBE, *map(str, pids)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(src)},
        cwd=cwd,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return {int(k): v for k, v in json.loads(done.stdout).items()}


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs root (and setpriv) to start processes as another user",
)
def test_unreadable_proc_entries_leave_out_what_cannot_be_read(tmp_path: Path) -> None:
    """A process of another user holding a model file open, a zombie and a PID that is gone,
    looked at once by root and once by root without the capabilities that read other users'
    /proc/PID/fd: the second sees no model file, and nothing raises or prints."""
    # Where "nobody" can open it (pytest's own temp tree is private to root).
    shared = Path(tempfile.mkdtemp(prefix="vramtop-hostile-"))
    shared.chmod(0o755)
    weights = shared / "model.safetensors"
    weights.write_bytes(b"\0" * 4096)
    weights.chmod(0o644)
    # fd 3 stays open across the exec; argv[0] becomes "serve.py".
    holder = subprocess.Popen(
        ["bash", "-c", 'exec 3<"$0"; exec -a serve.py sleep 60', str(weights)],
        preexec_fn=_as_nobody,
        cwd=shared,
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", "import os, time\nif os.fork() == 0: os._exit(0)\ntime.sleep(60)"],
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        deadline = time.monotonic() + 10
        zombies: list[int] = []
        while time.monotonic() < deadline:
            zombies = [
                c.pid
                for c in psutil.Process(parent.pid).children()
                if c.status() == psutil.STATUS_ZOMBIE
            ]
            held = psutil.Process(holder.pid)
            opened = [f.path for f in held.open_files()]
            if zombies and str(weights) in opened and held.cmdline()[0] == "serve.py":
                break
            time.sleep(0.05)
        assert zombies and str(weights) in opened
        premise = subprocess.run(
            [*NO_PROC_CAPS, "ls", f"/proc/{holder.pid}/fd"], capture_output=True, text=True
        )
        assert premise.returncode != 0 and "denied" in premise.stderr, premise
        pids = [holder.pid, zombies[0], gone.pid]
        full = _probe(pids, [], tmp_path)
        limited = _probe(pids, NO_PROC_CAPS, tmp_path)
        assert full[holder.pid]["files"] == [str(weights)], "the control sees the open file"
        assert limited[holder.pid]["files"] == [], "fd/ unreadable: no file, no error"
        for got in (full, limited):
            assert got[holder.pid]["command"] == "serve.py 60"
            assert got[holder.pid]["user"] in ("nobody", str(NOBODY))
            for pid in (zombies[0], gone.pid):
                assert got[pid]["start"] == 0.0 and got[pid]["command"] == "", got[pid]
    finally:
        for proc in (holder, parent):
            proc.kill()
            proc.wait()
        shutil.rmtree(shared)


def test_hostile_model_file_paths_are_cleaned(tmp_path: Path) -> None:
    """A real process holding open a weights file whose name carries an escape sequence, a bidi
    override and CJK: the enricher reports the path clean, and it draws as it reads."""
    name = "\x1b[31m模型\u202e\u200bevil\x07.safetensors"
    weights = tmp_path / name
    weights.write_bytes(b"\0" * 4096)
    holder = subprocess.Popen(
        ["bash", "-c", 'exec 3<"$0"; exec -a serve.py sleep 60', str(weights)], cwd=tmp_path
    )
    try:
        from vramtop.enrich.enricher import Enricher
        from vramtop.enrich.procinfo import ProcessTable
        from vramtop.messages import ProcessRow
        from vramtop.render.grid import Grid, text_width

        deadline = time.monotonic() + 10
        files: tuple[object, ...] = ()
        while not files and time.monotonic() < deadline:
            facts = ProcessTable().update([holder.pid])[holder.pid]
            row = ProcessRow(facts.identity, 0, 0, facts.user, facts.command, facts.same_user)
            (enrichment,) = Enricher().update([row])
            files = enrichment.model_files
            time.sleep(0.05)
        assert len(enrichment.model_files) == 1
        shown = enrichment.model_files[0].path
        assert shown == str(tmp_path / "模型evil.safetensors")
        grid = Grid(200, 1)
        assert grid.put(0, 0, shown) == text_width(shown) == len(shown) + 2
    finally:
        holder.kill()
        holder.wait()
