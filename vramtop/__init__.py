"""vramtop: the htop for GPU memory.

The package is split into a UI-free library layer (``gpu``, ``shm``, ``analysis``, ``enrich``,
``export``) and the process shell that runs it (``actors``) with its terminal face (``render``).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
