"""Put on ``PYTHONPATH`` by ``vramtop wrap``: starts the deep-mode reporter in every Python
process of the wrapped command (its children and grandchildren too, which inherit the
environment), then runs the ``sitecustomize`` that would have run without us.

Where it sits: ``modes/wrap.py`` sets ``VRAMTOP_REPORT=1``, ``VRAMTOP_HOME`` (the directory
holding the ``vramtop`` package of the wrapping vramtop) and this directory first on
``PYTHONPATH``; Python imports this module at start-up; :func:`vramtop.report` does the rest. The
reporter imports only the standard library, so it works in any Python 3.10+ environment, with or
without vramtop installed there. Nothing here may raise: a failure leaves the program running
without deep mode.
"""

import os
import sys


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path (a site's or a venv's own) under its name."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _start() -> None:
    home = os.environ.get("VRAMTOP_HOME", "")
    if home and "vramtop" not in sys.modules:
        # Load the wrapping vramtop's package without putting its site-packages on the path
        # (that would shadow the program's own libraries).
        import importlib.machinery
        import importlib.util

        spec = importlib.machinery.PathFinder.find_spec("vramtop", [home])
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules["vramtop"] = module
            spec.loader.exec_module(module)
    import vramtop

    vramtop.report()


if os.environ.get("VRAMTOP_REPORT") == "1":
    try:
        _start()
    except Exception as exc:  # never stop the program because of deep mode
        try:  # noqa: SIM105 (no contextlib import in every Python process)
            sys.stderr.write(f"vramtop: deep mode off: {type(exc).__name__}: {exc}\n")
        except Exception:
            pass
try:
    _chain()
except Exception:
    import traceback

    # The chained sitecustomize failed on its own, as Python itself would report it.
    traceback.print_exc()
