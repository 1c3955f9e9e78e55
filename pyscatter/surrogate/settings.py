"""Settings of a surrogate build: what every stage depends on, recorded in ``settings.json``.

Units: Å, eV, fs, K.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from pyscatter.conditions import FACETS, H2_BOND  # noqa: F401 - H2_BOND: r0 of the basis's H-H pairs

CU_BOND = 2.6  # Å, ace-jax's tabulated Cu length scale


class SurrogateError(ValueError):
    """Settings or a build directory that cannot be used; the message is one line."""


@dataclass(frozen=True)
class SurrogateSettings:
    """Everything a build depends on (defaults: the paper's workflow sized for a workstation).

    Sampling: facets, temperatures (K), states ((v, J), ...), collision_energies (eV),
    trajectories per condition, dt and max_time (fs), record_every_fs, initial_height (Å),
    n_snapshots thermal slabs per (facet, T), equilibration_fs of their Langevin chains.
    Placed H (:mod:`.placed`): approach_frames H2-over-slab pairs per (facet, T) at approach_heights (Å);
    atom_frames structures per (facet, T) of two separate H atoms down to atom_depth (Å) under the top layer,
    fitted at atom_weight (multiplies all their rows).
    Selection: n_train k-means frames, n_test held-out frames.
    NEB: neb_images (intermediate images), neb_fmax (eV/Å), neb_steps; mep_samples displaced
    copies per MEP image, H displaced by mep_rattle (Å, Gaussian, per component), Cu by a third.
    Fit: cutoff (Å), order (correlation order), max_degree (ace-jax TotalDegree level bound),
    energy_weight (per-atom energy rows relative to force rows; 100 gave the shipped surrogate its Cu(111)
    and Cu(211) barriers: 30 missed them by -37 and +53 meV, 300 doubled the H-force error),
    interaction_weight (each approach pair also fits the difference of its two energy rows, the teacher's
    interaction energy, at this multiple of an energy row's weight; 0: no such rows), validation_fraction,
    prior_strength (lambda / scale of the smoothness prior, scale = trace of the training normal matrix / sum of the
    prior's diagonal; None: chosen from 1e-14 ... 1e-2 on the validation split). The prior strength alone may change
    in a finished build: the fit is solved again from its posterior, without design rows.
    """

    facets: tuple[str, ...] = FACETS
    temperatures: tuple[float, ...] = (300.0, 600.0, 900.0)
    states: tuple[tuple[int, int], ...] = ((0, 0), (1, 1))
    collision_energies: tuple[float, ...] = (0.2, 0.5, 0.9)
    trajectories: int = 4
    dt: float = 0.1
    max_time: float = 400.0
    record_every_fs: float = 1.0
    initial_height: float = 7.0
    n_snapshots: int = 8
    equilibration_fs: float = 1000.0
    approach_frames: int = 64
    approach_heights: tuple[float, float] = (2.5, 7.5)
    atom_frames: int = 128
    atom_depth: float = 4.0
    atom_weight: float = 0.5
    n_train: int = 2000
    n_test: int = 400
    neb_images: int = 50
    neb_fmax: float = 0.05
    neb_steps: int = 500
    mep_samples: int = 24
    mep_rattle: float = 0.15
    cutoff: float = 6.0
    order: int = 4
    max_degree: int = 12
    energy_weight: float = 100.0
    interaction_weight: float = 10.0
    validation_fraction: float = 0.1
    prior_strength: float | None = None
    seed: int = 0
    batch_size: int = 8

    def __post_init__(self) -> None:
        bad = [f for f in self.facets if f not in FACETS]
        if bad or not self.facets:
            raise SurrogateError(f"facets must be a non-empty subset of {', '.join(FACETS)}, got {list(self.facets)}")
        for name in ("trajectories", "n_train", "n_test", "neb_images", "order", "max_degree", "n_snapshots", "batch_size"):
            if getattr(self, name) < 1:
                raise SurrogateError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperatures or not self.states or not self.collision_energies:
            raise SurrogateError("need at least one temperature, state and collision energy")
        if self.mep_samples < 0 or self.mep_rattle < 0:
            raise SurrogateError(f"mep_samples and mep_rattle must be >= 0, got {self.mep_samples}, {self.mep_rattle}")
        heights = tuple(self.approach_heights)
        if self.approach_frames < 0 or len(heights) != 2 or not 0.0 < heights[0] < heights[1]:
            raise SurrogateError(f"need approach_frames >= 0 and 0 < low < high approach_heights, got {self.approach_frames}, "
                                 f"{list(self.approach_heights)}")
        if self.interaction_weight < 0:
            raise SurrogateError(f"interaction_weight must be >= 0, got {self.interaction_weight}")
        if self.atom_frames < 0 or self.atom_depth < 0 or self.atom_weight < 0:
            raise SurrogateError(f"need atom_frames, atom_depth and atom_weight >= 0, got {self.atom_frames}, {self.atom_depth}, "
                                 f"{self.atom_weight}")
        if self.prior_strength is not None and not self.prior_strength > 0:
            raise SurrogateError(f"prior_strength must be > 0 (or None: chosen on the validation split), got {self.prior_strength}")
        if self.record_every_fs < self.dt:
            raise SurrogateError(f"record_every_fs ({self.record_every_fs}) must be >= dt ({self.dt})")

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


Progress = Callable[[str], None]
