"""Deep mode: a process reports its own PyTorch allocator figures to the monitor.

Data flow: ``vramtop.report()`` (in the user's process) starts :mod:`vramtop.deep.reporter`,
which serves one line of :mod:`vramtop.deep.protocol` JSON per connection on a Unix socket named
after its PID in the per-user directory of :mod:`vramtop.deep.paths`; the monitor's
``vramtop: deep`` actor (:mod:`vramtop.actors.deep`) reads every such socket through
:mod:`vramtop.deep.reader`, checks the peer with ``SO_PEERCRED`` and sends the figures to the
render process, the analyzer and the exporter. ``vramtop wrap`` (:mod:`vramtop.modes.wrap`)
injects the reporter with the ``sitecustomize`` in ``deep/inject/``.

Nothing here imports numpy, psutil, blessed or NVML: this package is loaded into other people's
processes.
"""
