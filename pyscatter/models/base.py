"""The force-model protocol: batched positions in, energies and forces out.

Every backend (EMT, MACE, ACE, an ASE calculator, Julia) implements :class:`ForceModel`.
A call evaluates a batch of ``B`` structures that share one :class:`Frame` (species, cell,
periodicity); positions are Cartesian in Å, energies are in eV and forces in eV/Å.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch and ase are imported where used: ModelError and Frame stay cheap to import
    import torch
    from ase import Atoms
    from ase.calculators.calculator import Calculator


@dataclass(frozen=True)
class Frame:
    """What all structures of a batch share.

    numbers: atomic numbers, shape (N,).
    cell: cell vectors as rows, shape (3, 3), Å.
    pbc: periodicity along each cell vector (slabs: ``(True, True, False)``).
    """

    numbers: np.ndarray
    cell: np.ndarray
    pbc: tuple[bool, bool, bool] = (True, True, False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", np.asarray(self.numbers, dtype=np.int64))
        object.__setattr__(self, "cell", np.asarray(self.cell, dtype=np.float64).reshape(3, 3))
        object.__setattr__(self, "pbc", tuple(bool(p) for p in self.pbc))

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    def atoms(self, positions: np.ndarray) -> Atoms:
        """One structure of this frame as ASE ``Atoms`` (positions in Å)."""
        from ase import Atoms

        return Atoms(numbers=self.numbers, positions=positions, cell=self.cell, pbc=self.pbc)

    @classmethod
    def from_atoms(cls, atoms: Atoms) -> "Frame":
        return cls(atoms.numbers.copy(), atoms.cell.array.copy(), tuple(atoms.pbc))


@dataclass
class ModelOutput:
    """energies: shape (B,), eV. forces: shape (B, N, 3), eV/Å, or None if not requested."""

    energies: torch.Tensor
    forces: torch.Tensor | None


@runtime_checkable
class ForceModel(Protocol):
    """A potential energy surface evaluated on batches of structures.

    Attributes:
        name: short human-readable identity (e.g. ``"emt"``, a file name).
        species: atomic numbers the model can evaluate.
        cutoff: interaction range in Å.
        dtype: floating-point type the model computes in.
        identity: a string that changes when the model's numbers change (file hash, parameters).

    Capabilities with defaults (a class that subclasses :class:`ForceModel` inherits them; every pyscatter
    model does): :attr:`default_batch_size`, :attr:`parameters`, :attr:`calculator` and :meth:`select`.
    """

    name: str
    species: frozenset[int]
    cutoff: float
    dtype: torch.dtype
    identity: str
    default_batch_size: int = 1
    """Systems per process the engine integrates together unless told otherwise (large for vectorised models)."""
    parameters: dict | None = None
    """JSON-ready parameters a run records in its provenance (an ASE calculator's), or None."""
    calculator: Calculator | None = None
    """The ASE calculator the model wraps, or None; a run records its class as the model's."""

    def select(self, frame: Frame, keep) -> None:
        """Keep members ``keep`` (1-D integer tensor or array of batch positions of the last call on ``frame``) in
        their new order. The next call on ``frame`` has ``len(keep)`` structures, those members in that order; their
        cached neighbour lists follow them without a new search. Default: nothing is kept (no cache to follow)."""

    def __call__(
        self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True
    ) -> ModelOutput:
        """Evaluate positions of shape (B, N, 3) in Å (any float dtype).

        Returns energies (B,) in eV and forces (B, N, 3) in eV/Å as float64 tensors on the
        positions' device. Each structure's result must not depend on the other members of
        the batch. A structure with non-finite positions or two atoms at one place gets NaN
        energy and forces; the call does not raise for it, and the others are unaffected.

        Models cache neighbour lists per frame (atomic numbers, cell, pbc; a few frames, least
        recently used dropped), so interleaved calls on different frames keep each other's lists.
        A batch of another size than the last call on its frame, without ``select``, is
        searched afresh; a structure that jumped (a refilled batch slot) alone is searched again.
        """
        ...


class ModelError(ValueError):
    """A model file or model specification that cannot be used; the message is one line."""


def check_species(model: ForceModel, numbers: np.ndarray) -> None:
    """Raise :class:`ModelError` if ``model`` cannot evaluate every element in ``numbers``."""
    from ase.data import chemical_symbols

    missing = sorted(set(int(z) for z in numbers) - set(model.species))
    if missing:
        names = ", ".join(chemical_symbols[z] for z in missing)
        known = ", ".join(chemical_symbols[z] for z in sorted(model.species))
        raise ModelError(f"model {model.name!r} has no parameters for {names} (atomic numbers {missing}); "
                         f"its elements: {known}")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ASECalculatorModel(ForceModel):
    """Any ASE calculator as a :class:`ForceModel`: loops over the batch (a reference, not fast).

    Pickles (for worker processes) as the calculator was when wrapped: many calculators stop pickling once
    they have computed (ASE's EMT keeps a lambda), and the run uses the calculator here first.
    """

    def __init__(self, calculator: Calculator, species: frozenset[int], cutoff: float, name: str = ""):
        import torch

        self.calculator = calculator
        self.species = frozenset(species)
        self.cutoff = float(cutoff)
        self.dtype = torch.float64
        self.name = name or type(calculator).__name__
        self.parameters = calculator_parameters(calculator)
        digest = hashlib.sha256(json.dumps(self.parameters, sort_keys=True).encode()).hexdigest()[:16]
        self.identity = f"ase:{type(calculator).__module__}.{type(calculator).__name__}:{digest}"
        try:
            self._pickled, self._pickle_error = pickle.dumps(calculator), ""
        except Exception as err:  # noqa: BLE001 - reported when a worker process needs it
            self._pickled, self._pickle_error = None, f"{type(err).__name__}: {err}"

    def __getstate__(self) -> dict:
        if self._pickled is None:
            raise TypeError(f"calculator {type(self.calculator).__name__} cannot be pickled ({self._pickle_error})")
        return {**self.__dict__, "calculator": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.calculator = pickle.loads(self._pickled)

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        import torch

        pos = positions.detach().to("cpu", torch.float64).numpy()
        energies = np.empty(len(pos))
        forces = np.empty_like(pos) if compute_forces else None
        for b, p in enumerate(pos):
            atoms = frame.atoms(p)
            atoms.calc = self.calculator
            energies[b] = atoms.get_potential_energy()
            if forces is not None:
                forces[b] = atoms.get_forces()
        dev = positions.device
        return ModelOutput(
            torch.from_numpy(energies).to(dev),
            None if forces is None else torch.from_numpy(forces).to(dev),
        )


def calculator_parameters(calculator: Calculator) -> dict:
    """The calculator's ``parameters`` (defaults included), else its ``todict()``, as JSON-ready values (repr where not)."""
    parameters = getattr(calculator, "parameters", None)
    if parameters is None and callable(getattr(calculator, "todict", None)):
        parameters = calculator.todict()
    parameters = dict(parameters or {})
    return json.loads(json.dumps(parameters, default=repr))
