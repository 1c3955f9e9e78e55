"""pyscatter: state-resolved dissociative sticking of H2/D2/HD on copper by quasi-classical MD."""

__version__ = "0.1.0"

_API = {"sticking_curve": "pyscatter.workflows.curve", "load_results": "pyscatter.analysis.curves"}


def __getattr__(name: str):
    """``pyscatter.sticking_curve`` and ``pyscatter.load_results``, imported on first use (keeps ``import pyscatter`` light)."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pyscatter' has no attribute {name!r}")
