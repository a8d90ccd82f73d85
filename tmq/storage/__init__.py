"""tmq.storage: the partition log on disk — segments, indexes, checkpoints, recovery.

File I/O only: no network, no reactor. Everything goes through a ``FileSystem`` (``files``),
so tests can crash the log at any byte and inject write errors.
"""
