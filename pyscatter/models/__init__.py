"""Force models behind one protocol; :func:`load_model` turns a ``--model`` argument into one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pyscatter.conditions import DEFAULT_MODEL
from pyscatter.models.base import (
    ASECalculatorModel,
    ForceModel,
    Frame,
    ModelError,
    ModelOutput,
)
from pyscatter.models.files import file_kind

EMT_WARNING = (
    "model 'emt' is ASE's effective-medium theory: a qualitative demonstration potential "
    "(no H2 dissociation barrier on Cu(111)); use the default model (h2cu-ace) or --model PATH (MACE, ACE) for real work"
)


SHIPPED = {"h2cu-ace": Path(__file__).resolve().parent.parent / "data" / "h2cu_ace_surrogate.npz"}
"""Models that ship with pyscatter, by name: the linear ACE surrogate of the H2/Cu MACE model of
Stark et al. (2023) (provenance, error table and barriers in ``pyscatter/data/h2cu_ace_surrogate.md``)."""
BARRIER_TOLERANCE = 0.030
"""eV: a shipped surrogate counts as validated on a facet whose CI-NEB barrier is this close to its teacher's."""


def model_notes(model: str, surface: str) -> list[str]:
    """What a run of ``model`` on Cu(``surface``) must tell its user: EMT is a demonstration; a shipped
    surrogate was not validated (barrier within ``BARRIER_TOLERANCE`` of its teacher's) on this facet."""
    if model == "emt":
        return [EMT_WARNING]
    if model not in SHIPPED:
        return []
    barriers = json.loads(SHIPPED[model].with_suffix(".json").read_text())["evaluation"]["barriers"]
    barrier = barriers.get(surface)
    if barrier is None:
        return [f"model {model!r} was not validated on Cu({surface}) (no CI-NEB barrier against its teacher)"]
    if abs(barrier["difference_meV"]) > 1e3 * BARRIER_TOLERANCE:
        miss = f"{barrier['difference_meV']:+.0f} meV ({barrier['surrogate_eV']:.3f} against {barrier['teacher_eV']:.3f} eV)"
        return [f"model {model!r} misses its teacher's Cu({surface}) dissociation barrier by {miss}"]
    return []


def _torch_backend(path: Path, dtype: str | None, trust: bool) -> ForceModel:
    import torch

    from pyscatter.models.mace import load_mace

    return load_mace(path, dtype=getattr(torch, dtype) if dtype else None, trust=trust)


def _ace_backend(path: Path, dtype: str | None, trust: bool) -> ForceModel:
    try:
        from pyscatter.models.ace import load_ace
    except ImportError as err:
        raise ModelError(f"{path}: ACE models need ace-jax and numba (pyscatter's dependencies): {err}") from None
    if dtype not in (None, "float64"):
        raise ModelError(f"{path}: ACE models are evaluated in float64, not {dtype}")
    return load_ace(path, kind=file_kind(path))


def _julia_backend(path: Path, dtype: str | None, trust: bool) -> ForceModel:
    from pyscatter.models.julia import JuliaACEModel

    return JuliaACEModel(path)


BACKENDS: dict[str, Callable[[Path, str | None, bool], ForceModel]] = {
    "torchscript": _torch_backend,
    "torch-zip": _torch_backend,
    "torch-pickle": _torch_backend,
    "npz": _ace_backend,
    "yace": _ace_backend,
    "json": _julia_backend,
}
"""Loader of each kind of model file (:func:`pyscatter.models.files.file_kind`): (path, dtype, trust) -> model."""


def load_model(spec: str, dtype: str | None = None, trust: bool = False) -> ForceModel:
    """``"emt"``, a shipped model's name (``SHIPPED``) or the path of a model file, as a :class:`ForceModel`.

    The file's kind comes from its content, whatever its name (:data:`BACKENDS`). dtype: ``"float32"`` or
    ``"float64"`` (default: the model's own). trust: load a pickled (whole-module torch) file, which runs
    code from it; without it such a file loads only if its sha256 is in the user's trust file
    (``pyscatter model trust FILE``). Raises a one-line :class:`ModelError` for anything unusable.
    The model's ``source`` is ``spec``: worker processes load it again from there.
    """
    if spec == "emt":
        from pyscatter.models.emt import EMTModel

        model = EMTModel()
    else:
        path = SHIPPED.get(spec, Path(spec))
        model = BACKENDS[file_kind(path)](path, dtype, trust)
    if spec in SHIPPED:
        model.name = spec
    model.source = spec
    return model


__all__ = [
    "DEFAULT_MODEL", "EMT_WARNING", "SHIPPED", "ASECalculatorModel", "ForceModel", "Frame", "ModelError", "ModelOutput",
    "BACKENDS", "load_model", "model_notes",
]
