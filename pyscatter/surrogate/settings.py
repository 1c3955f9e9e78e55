"""Settings of a surrogate build: what every stage depends on, recorded in ``settings.json``.

Units: Å, eV, fs, K.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from pyscatter.conditions import FACETS, H2_BOND, option  # noqa: F401 - H2_BOND: r0 of the basis's H-H pairs

CU_BOND = 2.6  # Å, ace-jax's tabulated Cu length scale


class SurrogateError(ValueError):
    """Settings or a build directory that cannot be used; the message is one line."""


@dataclass(frozen=True)
class SurrogateSettings:
    """Everything a build depends on (defaults: the paper's workflow sized for a workstation); each field's help
    (units included) is its ``pyscatter surrogate build`` option's.

    Stages: sampling (teacher trajectories on thermal slabs), placed H (:mod:`.placed`), k-means selection, CI-NEB
    with displaced copies of each MEP image, linear ACE fit. ``energy_weight`` 100 gave the shipped surrogate its
    Cu(111) and Cu(211) barriers: 30 missed them by -37 and +53 meV, 300 doubled the H-force error. The prior strength
    alone may change in a finished build: the fit is solved again from its posterior, without design rows.
    """

    facets: tuple[str, ...] = option("Cu facets, comma-separated", FACETS)
    temperatures: tuple[float, ...] = option("surface temperatures, K, comma-separated", (300.0, 600.0, 900.0))
    states: tuple[tuple[int, int], ...] = option("molecular states v:J, comma-separated", ((0, 0), (1, 1)))
    collision_energies: tuple[float, ...] = option("collision energies, eV, comma-separated", (0.2, 0.5, 0.9),
                                                   flag="--energies")
    trajectories: int = option("teacher trajectories per condition", 4, minimum=1)
    dt: float = option("time step, fs", 0.1)
    max_time: float = option("longest teacher trajectory, fs", 400.0)
    record_every_fs: float = option("interval between recorded frames, fs", 1.0)
    initial_height: float = option("molecular centre of mass above the top layer at t=0, Å", 7.0)
    n_snapshots: int = option("thermal slabs per facet and T", 8, flag="--snapshots", minimum=1)
    equilibration_fs: float = option("Langevin equilibration of the thermal slabs, fs", 1000.0, flag="--equilibration")
    approach_frames: int = option("teacher-labelled H2-over-slab pairs per facet and T on the far approach", 64,
                                  minimum=0)
    approach_heights: tuple[float, float] = option("their centre-of-mass heights, Å, low,high", (2.5, 7.5))
    atom_frames: int = option("teacher-labelled structures per facet and T of two separate H atoms in and on the slab",
                              128, minimum=0)
    atom_depth: float = option("how far under the top layer they go, Å", 4.0, minimum=0)
    atom_weight: float = option("weight of each of their rows in the fit", 0.5, minimum=0)
    n_train: int = option("k-means training frames", 2000, minimum=1)
    n_test: int = option("held-out frames", 400, minimum=1)
    neb_images: int = option("intermediate CI-NEB images", 50, minimum=1)
    neb_fmax: float = option("CI-NEB force convergence, eV/Å", 0.05)
    neb_steps: int = option("most CI-NEB optimiser steps", 500)
    mep_samples: int = option("teacher-labelled displaced copies per MEP image", 24, minimum=0)
    mep_rattle: float = option("H displacement of those copies, Å (Gaussian, per component; Cu by a third)", 0.15,
                               minimum=0)
    cutoff: float = option("ACE cutoff, Å", 6.0)
    order: int = option("ACE correlation order", 4, minimum=1)
    max_degree: int = option("ace-jax total-degree bound", 12, minimum=1)
    energy_weight: float = option("weight of per-atom energy rows relative to force rows", 100.0)
    interaction_weight: float = option("weight of each approach pair's interaction-energy row (the difference of its "
                                       "two energy rows), in energy rows; 0: no such rows", 10.0, minimum=0)
    validation_fraction: float = option("fraction of the training frames that chooses the prior strength", 0.1)
    prior_strength: float | None = option(
        "lambda / scale of the fit's smoothness prior, scale = trace of the training normal matrix / sum of the "
        "prior's diagonal (default: chosen from 1e-14 ... 1e-2 on the validation split); changing it in a finished "
        "build solves the fit again from its posterior, in seconds", None)
    seed: int = option("root of the build's random streams", 0)
    batch_size: int = option("teacher structures per call", 8, minimum=1)

    def __post_init__(self) -> None:
        bad = [f for f in self.facets if f not in FACETS]
        if bad or not self.facets:
            raise SurrogateError(f"facets must be a non-empty subset of {', '.join(FACETS)}, got {list(self.facets)}")
        for f in dataclasses.fields(self):
            minimum = f.metadata["minimum"]
            if minimum is not None and getattr(self, f.name) < minimum:
                raise SurrogateError(f"{f.name} must be >= {minimum}, got {getattr(self, f.name)}")
        if not self.temperatures or not self.states or not self.collision_energies:
            raise SurrogateError("need at least one temperature, state and collision energy")
        heights = tuple(self.approach_heights)
        if len(heights) != 2 or not 0.0 < heights[0] < heights[1]:
            raise SurrogateError(f"need 0 < low < high approach_heights, got {list(self.approach_heights)}")
        if self.prior_strength is not None and not self.prior_strength > 0:
            raise SurrogateError(f"prior_strength must be > 0 (or None: chosen on the validation split), got {self.prior_strength}")
        if self.record_every_fs < self.dt:
            raise SurrogateError(f"record_every_fs ({self.record_every_fs}) must be >= dt ({self.dt})")

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


Progress = Callable[[str], None]
