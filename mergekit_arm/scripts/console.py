"""What the command-line tools share: console logging and how a failure ends the process."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import click

from mergekit_arm import __version__
from mergekit_arm.errors import ArmError


def version_option(command: click.Command) -> click.Command:
    """``--version``: print ``COMMAND (mergekit-arm) VERSION`` and exit."""
    return click.version_option(__version__, "--version", package_name="mergekit-arm",
                                message="%(prog)s (mergekit-arm) %(version)s")(command)


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


@contextlib.contextmanager
def exit_on_failure(command: str, after_interrupt: str) -> Iterator[None]:
    """An :class:`ArmError` ends the process with ``COMMAND: error: MESSAGE`` and exit 2;
    Ctrl-C with ``COMMAND: interrupted; AFTER_INTERRUPT`` and exit 130 (no traceback).
    Any other exception is a bug and keeps its traceback."""
    try:
        yield
    except ArmError as error:
        click.echo(f"{command}: error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"{command}: interrupted; {after_interrupt}", err=True)
        sys.exit(130)


__all__ = ["configure_logging", "exit_on_failure"]
