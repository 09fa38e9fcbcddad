"""Deep mode: a process reports its own PyTorch allocator figures to the monitor.

Data flow: ``vramtop.report()`` (in the user's process) starts :mod:`vramtop.deep.reporter`,
which serves one line of :mod:`vramtop.deep.protocol` JSON per connection on a Unix socket named
after its PID in the per-user directory of :mod:`vramtop.deep.paths`; the monitor's
``vramtop: deep`` actor (its core: :mod:`vramtop.deep.core`) reads every such socket through
:mod:`vramtop.deep.reader`, checks the peer with ``SO_PEERCRED`` and sends the figures to the
render process, the analyzer and the exporter. ``vramtop wrap`` (:mod:`vramtop.modes.wrap`)
injects the reporter with the ``sitecustomize`` in ``deep/inject/``.

What is loaded into other people's processes (``reporter``, ``protocol``, ``paths``, the
``sitecustomize``) imports only the standard library; the monitor's side (``reader``, ``core``,
``attribution``) adds psutil, lazily.
"""
