"""The layout shows the architecture: the modes that do not run the actor system (``--once``,
``record``), the exports and the command line never import an actor module, so they stay one
light process whatever the actors grow into."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(
    """
    import contextlib, io, json, pkgutil, sys
    import vramtop.export
    import vramtop.cli, vramtop.modes.once, vramtop.modes.record
    for info in pkgutil.iter_modules(vramtop.export.__path__, "vramtop.export."):
        __import__(info.name)
    imported = [m for m in sys.modules if m.startswith("vramtop.actors")]
    # Not only imported: run both modes through the command line, as a user does.
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        once = vramtop.cli.main(["--demo", "small", "--once", "--json"])
        record = vramtop.cli.main(["record", sys.argv[1], "--demo", "small", "--count", "1"])
    ran = [m for m in sys.modules if m.startswith("vramtop.actors")]
    gpus = len(json.loads(out.getvalue())["gpus"])
    print(json.dumps({"imported": imported, "ran": ran, "codes": [once, record], "gpus": gpus}))
    """
)


def _probe(tmp_path: Path, code: str = PROBE) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "rec.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_cli_exports_once_and_record_import_no_actor(tmp_path: Path) -> None:
    result = _probe(tmp_path)
    assert result["codes"] == [0, 0]
    assert isinstance(result["gpus"], int) and result["gpus"] > 0  # the modes really ran
    assert (tmp_path / "rec.csv").read_text().count("\n") > 1
    assert result["imported"] == []
    assert result["ran"] == []


def test_the_probe_sees_an_actor_import(tmp_path: Path) -> None:
    # The same check on the live monitor's module finds the actors, so an empty list above
    # means they were absent, not that the check looks in the wrong place.
    code = "import json, sys, vramtop.modes.monitor\n" + (
        'print(json.dumps({"ran": [m for m in sys.modules if m.startswith("vramtop.actors")]}))'
    )
    assert "vramtop.actors.supervisor" in _probe(tmp_path, code)["ran"]  # type: ignore[operator]


def test_version_and_help_import_neither_numpy_nor_an_actor() -> None:
    # `vramtop --version` in a login script or a completion helper must stay instant.
    code = textwrap.dedent(
        """
        import contextlib, io, json, sys
        import vramtop.cli
        seen = {}
        for flag in ("--version", "--help"):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
                vramtop.cli.main([flag])
            seen[flag] = sorted(m for m in sys.modules
                                if m == "numpy" or m.startswith(("vramtop.actors", "blessed")))
        print(json.dumps(seen))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"--version": [], "--help": []}
