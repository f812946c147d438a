"""Log records through :mod:`logging`, without importing it on the way to a key.

A short process that reads one key (a CLI call, a test worker) spends a fifth of
its import time on ``logging`` if the library imports it eagerly. Until some
code imports ``logging``, nothing can have set a handler or a level, and a DEBUG
record would be dropped (only WARNING and above reach logging's last-resort
handler), so :func:`debug` drops it without the import. Records go to the
logger named by the calling module, as ``logging.getLogger(__name__)`` would.
"""

from __future__ import annotations

import sys

__all__ = ["debug", "warning"]


def debug(name: str, message: str, *args: object) -> None:
    """Log a DEBUG record to the logger ``name``, if logging is in use."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(name).debug(message, *args)


def warning(name: str, message: str, *args: object) -> None:
    """Log a WARNING record to the logger ``name``."""
    import logging

    logging.getLogger(name).warning(message, *args)
