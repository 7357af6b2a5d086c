"""Console logging of the ``arm-stream`` and ``arm-choose`` commands."""

from __future__ import annotations

import logging


def configure_logging(verbose: bool, quiet: bool, progress_loggers: tuple[str, ...] = ()) -> None:
    """Console logging: warnings (errors only with -q, everything with -v); the
    ``progress_loggers`` also log their progress (INFO) unless -q.

    Leaves an already configured root logger (an embedding application, pytest) alone.
    """
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    handler.setLevel(min(level, logging.INFO) if progress_loggers and not quiet else level)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("mergekit_arm").setLevel(level)
    for name in progress_loggers if not quiet else ():
        logging.getLogger(name).setLevel(min(level, logging.INFO))


__all__ = ["configure_logging"]
