"""The process shell: the supervisor and one actor per OS process (design.md, "The shape").

Each actor is a plain core object stepped by :func:`vramtop.actors.base.run_actor` in its own
process; the supervisor (``supervisor.py``) creates the shared memory and the mailboxes, starts
the actors with the ``fork`` context, restarts the ones that die and stops them in order.
"""
