"""Force models behind one protocol; :func:`load_model` turns a ``--model`` argument into one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pyscatter.conditions import DEFAULT_MODEL, METALS
from pyscatter.models.base import (
    ASECalculatorModel,
    ForceModel,
    Frame,
    ModelError,
    ModelOutput,
)
from pyscatter.models.files import committee_record, file_kind
from pyscatter.models.reference import ModelRef

EMT_WARNING = (
    "model 'emt' is ASE's effective-medium theory: a qualitative demonstration potential "
    "(no H2 dissociation barrier on Cu(111), not fitted to H2 on any metal); use the default model (h2cu-ace) or --model PATH (MACE, ACE) for real work"
)


_DATA = Path(__file__).resolve().parent.parent / "data"
SHIPPED = {"h2cu-ace": _DATA / "h2cu_ace_surrogate.npz", "h2cu-ace-committee": _DATA / "h2cu_ace_committee.npz"}
"""Models that ship with pyscatter, by name: the linear ACE surrogate of the H2/Cu MACE model of
Stark et al. (2023) (provenance, error table and barriers in ``pyscatter/data/h2cu_ace_surrogate.md``) and a
calibrated committee of 8 around it (``h2cu_ace_committee.json``; its mean is ``h2cu-ace``, its members
``h2cu-ace-committee#0`` ... ``#7``)."""
BARRIER_TOLERANCE = 0.030
"""eV: a shipped surrogate counts as validated on a facet whose CI-NEB barrier is this close to its teacher's."""


def model_notes(model: str, surface: str) -> list[str]:
    """What a run of ``model`` on Cu(``surface``) must tell its user: EMT is a demonstration; a shipped
    surrogate (a committee and its members: the model it was drawn around, ``mean_of``) was not validated (barrier within ``BARRIER_TOLERANCE`` of its teacher's) on this facet,
    or departs from its teacher on the sticking probability there (``observable_validation`` of its provenance file)."""
    if model == "emt":
        return [EMT_WARNING]
    model = _member_spec(model)[0]
    if model not in SHIPPED:
        return []
    record = json.loads(SHIPPED[model].with_suffix(".json").read_text())
    provenance = json.loads(SHIPPED[record.get("mean_of", model)].with_suffix(".json").read_text())
    barrier = provenance["evaluation"]["barriers"].get(surface)
    if barrier is None:
        return [f"model {model!r} was not validated on Cu({surface}) (no CI-NEB barrier against its teacher)"]
    notes = []
    if abs(barrier["difference_meV"]) > 1e3 * BARRIER_TOLERANCE:
        miss = f"{barrier['difference_meV']:+.0f} meV ({barrier['surrogate_eV']:.3f} against {barrier['teacher_eV']:.3f} eV)"
        notes.append(f"model {model!r} misses its teacher's Cu({surface}) dissociation barrier by {miss}")
    observed = provenance.get("observable_validation", {}).get(surface)
    if observed:
        notes.append(f"model {model!r} {observed}")
    return notes


def _torch_backend(path: Path, dtype: str | None, trust: bool, device: str = "cpu") -> ForceModel:
    import torch

    from pyscatter.models.mace import DEFAULT_MAX_EDGES_PER_PASS, load_mace

    try:
        torch.empty(0, device=device)
    except (AssertionError, NotImplementedError, RuntimeError, ValueError) as err:  # AssertionError: a CPU-only torch
        raise ModelError(f"{path}: cannot use device {device!r}: {str(err).splitlines()[0]}") from None
    on_cpu = torch.device(device).type == "cpu"  # a GPU takes the whole batch in one pass
    return load_mace(path, dtype=getattr(torch, dtype) if dtype else None, trust=trust, device=device,
                     max_edges_per_pass=DEFAULT_MAX_EDGES_PER_PASS if on_cpu else None)


def _on_cpu(path: Path, device: str) -> None:
    """Refuse another device than the CPU for a model evaluated on the CPU only."""
    if device != "cpu":
        raise ModelError(f"{path}: this kind of model runs on the CPU only, not on {device!r}")


def committee_members(spec: str) -> list[str]:
    """The members of the ACE committee file (or shipped name) ``spec`` as specs ``"spec#0"``, ..., ``"spec#K-1"``,
    each of which :func:`load_model` loads as an ordinary model; any other spec as ``[spec]``."""
    path = SHIPPED.get(spec, Path(spec))
    record = committee_record(path) if path.is_file() else None
    return [spec] if record is None else [f"{spec}#{k}" for k in range(record["members"])]


def _member_spec(spec: str) -> tuple[str, int | None]:
    """``"PATH#k"`` -> (``"PATH"``, k) unless ``spec`` names an existing file; else (spec, None)."""
    base, sep, k = spec.rpartition("#")
    if not sep or not k.isdigit() or Path(spec).exists():
        return spec, None
    return base, int(k)


def _ace_backend(path: Path, dtype: str | None, trust: bool, device: str = "cpu", member: int | None = None) -> ForceModel:
    _on_cpu(path, device)
    try:
        from pyscatter.models.ace import load_ace
    except ImportError as err:
        raise ModelError(f"{path}: ACE models need ace-jax and numba (pyscatter's dependencies): {err}") from None
    if dtype not in (None, "float64"):
        raise ModelError(f"{path}: ACE models are evaluated in float64, not {dtype}")
    return load_ace(path, kind=file_kind(path), member=member)


def _julia_backend(path: Path, dtype: str | None, trust: bool, device: str = "cpu") -> ForceModel:
    _on_cpu(path, device)
    from pyscatter.models.julia import JuliaACEModel

    return JuliaACEModel(path)


BACKENDS: dict[str, Callable[[Path, str | None, bool, str], ForceModel]] = {
    "torchscript": _torch_backend,
    "torch-zip": _torch_backend,
    "torch-pickle": _torch_backend,
    "npz": _ace_backend,
    "yace": _ace_backend,
    "json": _julia_backend,
}
"""Loader of each kind of model file (:func:`pyscatter.models.files.file_kind`): (path, dtype, trust, device) -> model."""


def _calculator_species() -> frozenset[int]:
    from ase.data import atomic_numbers

    return frozenset({1, *(atomic_numbers[metal] for metal in METALS)})


CALCULATOR_SPECIES = _calculator_species()
"""Atomic numbers an ASE calculator passed as a model is taken to evaluate: H and the fcc metals of a built slab."""
DEFAULT_CALCULATOR_CUTOFF = 6.0
"""Å: the interaction range taken for an ASE calculator that states none (see :func:`calculator_cutoff`). Free
flight is exact only if the calculator's true range is not longer: wrap it in :class:`ASECalculatorModel` with
its range otherwise."""


def calculator_cutoff(calculator) -> float:
    """An ASE calculator's interaction range, Å: its ``cutoff``, ``r_max`` (MACE) or ``rc_list`` (ASE's EMT, which
    sets it on its first calculation: a copy is evaluated on an H2 + Cu probe) attribute, else
    :data:`DEFAULT_CALCULATOR_CUTOFF`."""
    import copy

    from ase import Atoms

    def stated(calc) -> float | None:
        for name in ("cutoff", "r_max", "rc_list"):
            value = getattr(calc, name, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    found = stated(calculator)
    if found is None:
        try:
            probe = copy.deepcopy(calculator)
            atoms = Atoms("CuH2", positions=[[0, 0, 0], [0, 0, 2.5], [0, 0, 3.25]], cell=[20, 20, 20])
            atoms.calc = probe
            atoms.get_potential_energy()
            found = stated(probe)
        except Exception:  # noqa: BLE001 - a calculator that cannot be probed states no range
            found = None
    return DEFAULT_CALCULATOR_CUTOFF if found is None else found


def model_object(model) -> tuple[str, ForceModel]:
    """A run's model given as a Python object: (the name its :class:`~pyscatter.conditions.RunSpec` records, the
    :class:`ForceModel`).

    An ASE calculator is wrapped in :class:`ASECalculatorModel` (species :data:`CALCULATOR_SPECIES`, range
    :func:`calculator_cutoff`) and named ``ase:<class>`` (e.g. ``ase:EMT``); a :class:`ForceModel` is named
    ``object:<name>`` (an ``ASECalculatorModel``: ``ase:<name>``). A model known by name travels as a
    :class:`ModelRef` of that name instead.
    """
    from ase.calculators.calculator import BaseCalculator

    if isinstance(model, BaseCalculator):
        wrapped = ASECalculatorModel(model, CALCULATOR_SPECIES, calculator_cutoff(model))
        return f"ase:{wrapped.name}", wrapped
    if not isinstance(model, ForceModel):
        raise ModelError(f"model {type(model).__name__!r} is neither a model name, an ASE calculator nor a ForceModel "
                         "(subclass pyscatter.models.base.ForceModel: name, species, cutoff, dtype, identity and __call__)")
    return f"{'ase' if isinstance(model, ASECalculatorModel) else 'object'}:{model.name}", model


def load_model(spec: str, dtype: str | None = None, trust: bool = False, device: str = "cpu") -> ForceModel:
    """``"emt"``, a shipped model's name (``SHIPPED``) or the path of a model file, as a :class:`ForceModel`;
    ``"NAME#k"`` or ``"PATH#k"``: member k of an ACE committee file (:func:`committee_members`).

    The file's kind comes from its content, whatever its name (:data:`BACKENDS`). dtype: ``"float32"`` or
    ``"float64"`` (default: the model's own). trust: load a pickled (whole-module torch) file, which runs
    code from it; without it such a file loads only if its sha256 is in the user's trust file
    (``pyscatter model trust FILE``). Raises a one-line :class:`ModelError` for anything unusable.
    A run names its model by a :class:`ModelRef`, from which worker processes load it again.
    """
    base, member = _member_spec(spec)
    if spec == "emt":
        from pyscatter.models.emt import EMTModel

        _on_cpu(Path(spec), device)
        model = EMTModel()
    elif member is not None:
        path = SHIPPED.get(base, Path(base))
        if file_kind(path) != "npz":
            raise ModelError(f"{spec}: only ACE committee files (.npz) have members, {base} is a {file_kind(path)} file")
        model = _ace_backend(path, dtype, trust, device, member)
    else:
        path = SHIPPED.get(spec, Path(spec))
        model = BACKENDS[file_kind(path)](path, dtype, trust, device)
    if base in SHIPPED:
        model.name = spec
    return model


__all__ = [
    "DEFAULT_MODEL", "EMT_WARNING", "SHIPPED", "ASECalculatorModel", "ForceModel", "Frame", "ModelError", "ModelOutput",
    "ModelRef",
    "BACKENDS", "CALCULATOR_SPECIES", "DEFAULT_CALCULATOR_CUTOFF", "calculator_cutoff", "committee_members", "load_model", "model_notes",
    "model_object",
]
