"""The ``pyscatter`` command: :func:`main` parses arguments and dispatches to the command modules."""

__all__ = ["main"]


def __getattr__(name: str):
    """``main``, imported on first use (so ``python -m pyscatter.cli.main`` does not import it twice)."""
    if name == "main":
        from pyscatter.cli.main import main

        return main
    raise AttributeError(f"module 'pyscatter.cli' has no attribute {name!r}")
