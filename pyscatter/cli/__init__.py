"""The ``pyscatter`` command: :func:`main` parses arguments and dispatches to the command modules."""

from pyscatter.cli.main import main

__all__ = ["main"]
