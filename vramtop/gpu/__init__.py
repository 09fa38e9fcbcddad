"""GPU backends: where samples come from (NVML, simulated scenarios, later recordings).

Every backend yields immutable :class:`~vramtop.gpu.snapshot.Snapshot` objects through the
:class:`~vramtop.gpu.backend.GpuBackend` protocol; the sampler actor is their only caller in the
monitor, ``--once`` calls them directly.
"""
