"""Conditions: what one sticking probability is computed for, and how.

A :class:`RunSpec` fixes everything shared by the collision energies of one run directory
(facet, surface temperature, molecular state, model, integration settings, seed); each
collision energy in it is one condition.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from pyscatter.initial.surface import FACETS
from pyscatter.models import DEFAULT_MODEL

MOLECULE_NAMES = ("H2", "D2", "HD")


class ConditionError(ValueError):
    """An impossible or unsupported condition; the message is one line."""


@dataclass(frozen=True)
class RunSpec:
    """Settings shared by all collision energies of a run.

    surface: Cu facet ("111", "100", "110", "211").
    temperature: surface temperature, K.
    v, J: vibrational and rotational quantum numbers of the incident molecule.
    molecule: "H2", "D2" or "HD".
    model: model specification as given by the user: a shipped model's name (default: the H2/Cu ACE
        surrogate, ``pyscatter.models.DEFAULT_MODEL``), "emt" or a model file.
    seed: root of every per-trajectory random stream.
    dt: time step, fs.  max_time: longest trajectory, fs.
    lattice_constant: Cu lattice constant at ``temperature``, Å (None: from the model).
    initial_height: molecular centre of mass above the top layer at t=0, Å.
    scatter_height: centre-of-mass height above the top layer that ends a trajectory as scattered, Å.
    dissociation_distance: H-H distance that ends a trajectory as dissociated, Å.
    n_snapshots: number of thermal slab snapshots the initial conditions draw from.
    """

    surface: str
    temperature: float
    v: int
    J: int
    molecule: str = "H2"
    model: str = DEFAULT_MODEL
    seed: int = 0
    dt: float = 0.1
    max_time: float = 3000.0
    lattice_constant: float | None = None
    initial_height: float = 7.0
    scatter_height: float = 7.1
    dissociation_distance: float = 2.25
    n_snapshots: int = 64

    def __post_init__(self) -> None:
        if self.surface not in FACETS:
            raise ConditionError(f"unknown facet {self.surface!r}: choose one of {', '.join(FACETS)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConditionError(f"surface temperature must be > 0 K, got {self.temperature}")
        for name in ("v", "J"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConditionError(f"{name} must be a non-negative integer, got {value!r}")
        if self.molecule not in MOLECULE_NAMES:
            raise ConditionError(f"unknown molecule {self.molecule!r}: choose one of {', '.join(MOLECULE_NAMES)}")
        if not (self.dt > 0 and self.max_time > self.dt):
            raise ConditionError(f"need 0 < dt < max-time, got dt={self.dt} fs, max-time={self.max_time} fs")
        if self.lattice_constant is not None and not self.lattice_constant > 0:
            raise ConditionError(f"lattice constant must be > 0 Å, got {self.lattice_constant}")
        if self.n_snapshots <= 0:
            raise ConditionError(f"number of thermal snapshots must be > 0, got {self.n_snapshots}")

    @property
    def max_steps(self) -> int:
        return int(round(self.max_time / self.dt))

    def as_dict(self) -> dict:
        """Flat JSON-ready fields, the form a run directory stores."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "RunSpec":
        """The spec of :meth:`as_dict`'s form (as stored in a run directory)."""
        return cls(**fields)


def check_collision_energy(collision_energy: float) -> float:
    """Validate a collision energy in eV."""
    if not (math.isfinite(collision_energy) and collision_energy > 0):
        raise ConditionError(f"collision energy must be > 0 eV, got {collision_energy}")
    return float(collision_energy)


def check_trajectories(n_trajectories: int) -> int:
    if n_trajectories <= 0:
        raise ConditionError(f"number of trajectories must be > 0, got {n_trajectories}")
    return int(n_trajectories)
