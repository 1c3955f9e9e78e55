"""Optional dependencies: which extra of pyscatter installs each, and the one message that names it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Extra:
    """An extra of pyscatter: ``needs`` (what needs it, with its verb), the ``distribution`` it installs, its
    ``name``, and whether only a source checkout can use it (``pip install -e``)."""

    needs: str
    distribution: str
    name: str
    source_only: bool = False

    def missing(self) -> str:
        where = f"pip install -e '.[{self.name}]' in a source checkout" if self.source_only \
            else f"pip install 'pyscatter[{self.name}]'"
        return f"{self.needs} the optional dependency {self.distribution}: {where}"


EXTRAS: dict[str, Extra] = {
    "mace": Extra("the MACE models need", "mace-torch", "mace"),
    "e3nn": Extra("the MACE models need", "mace-torch", "mace"),  # installed with mace-torch
    "juliacall": Extra("the nqcd engine needs", "juliacall", "julia", source_only=True),  # Julia code in the checkout
    "dask": Extra("Dask execution needs", "dask", "dask"),
    "distributed": Extra("Dask execution needs", "distributed", "dask"),
}
"""Top-level module -> the extra that installs it."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message is one line and names the extra that installs it."""


def import_optional(name: str) -> ModuleType:
    """The module ``name`` of one of the :data:`EXTRAS` packages, or :class:`MissingExtra`, e.g. "the MACE models
    need the optional dependency mace-torch: pip install 'pyscatter[mace]'" (with the import error when the package
    is there but something it imports is not)."""
    top = name.partition(".")[0]
    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing = (err.name or "").partition(".")[0]
        cause = "" if missing == top else f" ({' '.join(str(err).split())})"
        raise MissingExtra(EXTRAS[top].missing() + cause) from err
