"""Dissociation barriers: the climbing-image NEB minimum energy path of H2 on a frozen Cu facet.

The path runs from the gas-phase molecule (4 Å above a bridge site, bond parallel to the surface
and across the bridge) to the two H atoms adsorbed in the hollows on either side of that bridge
(the endpoints and the CI-NEB of ASE are those of :mod:`pyscatter.initial.dissociation`, as in the surrogate build). The barrier is
the climbing image's energy above the initial state; lengths in Å, energies in eV.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from pyscatter.initial.dissociation import dissociation_endpoints, minimum_energy_path
from pyscatter.initial.surface import build_slab, lattice_constant_0K
from pyscatter.models.base import ForceModel, check_species


@contextlib.contextmanager
def _torch_threads(n: int):
    """One structure per force call is fastest on one thread; restore the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class MinimumEnergyPath:
    """A converged (or not) CI-NEB path.

    images: Atoms with their energy (eV) and forces (eV/Å), initial state first.
    energies: per image relative to the initial state, eV.  path: reaction coordinate (cumulative
    image distance), Å.  fit_path, fit_energies: ASE's force-consistent spline through the images.
    hh_distance: H–H distance per image, Å.  height: H2 centre of mass above the top layer, Å.
    """

    surface: str
    model: str
    lattice_constant: float
    fmax: float
    converged: bool
    images: list[Atoms]
    energies: np.ndarray
    path: np.ndarray
    fit_path: np.ndarray
    fit_energies: np.ndarray
    hh_distance: np.ndarray
    height: np.ndarray

    @property
    def barrier(self) -> float:
        """Highest image (the climbing image) above the initial state, eV (0 if the path only descends)."""
        return float(self.energies.max())

    @property
    def reaction_energy(self) -> float:
        """Final (adsorbed) minus initial (gas-phase) energy, eV."""
        return float(self.energies[-1])

    def as_dict(self) -> dict:
        top = int(np.argmax(self.energies))
        return {
            "surface": self.surface, "model": self.model, "lattice_constant_A": self.lattice_constant,
            "barrier_eV": self.barrier, "reaction_energy_eV": self.reaction_energy, "converged": self.converged,
            "fmax_eV_per_A": self.fmax, "n_images": len(self.images),
            "transition_state": {"image": top, "hh_distance_A": float(self.hh_distance[top]),
                                 "height_A": float(self.height[top])},
            "path_A": self.path.tolist(), "energies_eV": self.energies.tolist(),
            "hh_distance_A": self.hh_distance.tolist(), "height_A": self.height.tolist(),
        }

    def write(self, directory: str | Path) -> list[Path]:
        """``mep.extxyz`` (images with energies and forces) and ``mep.json`` (barrier and profile)."""
        from ase.io import write

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write(directory / "mep.extxyz", self.images, format="extxyz")
        (directory / "mep.json").write_text(json.dumps(self.as_dict(), indent=2))
        return [directory / "mep.extxyz", directory / "mep.json"]


def dissociation_path(
    model: ForceModel,
    surface: str = "111",
    lattice_constant: float | None = None,
    n_images: int = 7,
    fmax: float = 0.05,
    steps: int = 1000,
    model_name: str = "",
) -> MinimumEnergyPath:
    """CI-NEB of H2 → 2 H on the frozen ideal Cu(``surface``) slab under ``model``.

    lattice_constant: Å (default: the model's static 0 K value).  n_images: intermediate images.
    fmax: NEB force convergence, eV/Å; ``converged`` says whether it was reached within ``steps``.
    """
    from ase.mep import NEB
    from ase.utils.forcecurve import fit_images


    check_species(model, np.array([1, 29]))
    with _torch_threads(1):
        a = lattice_constant if lattice_constant is not None else lattice_constant_0K(model)
        initial, final = dissociation_endpoints(surface, a, model)
        images, _ = minimum_energy_path(initial, final, model, n_images, fmax, steps)
        band = NEB(images, climb=True, allow_shared_calculator=True, method="improvedtangent")
        residual = float(np.linalg.norm(band.get_forces(), axis=1).max())
        for image in images:
            image.info = {}  # drop the slab builder's adsorbate_info (not writable to extxyz)
            image.calc = SinglePointCalculator(image, energy=image.get_potential_energy(), forces=image.get_forces())
    fit = fit_images(images)  # energies relative to the first image
    h = np.array([image.positions[-2:] for image in images])
    top = build_slab(surface, a).top_layer_height
    return MinimumEnergyPath(
        surface=surface, model=model_name or model.name, lattice_constant=a, fmax=fmax, converged=residual <= fmax,
        images=images, energies=np.asarray(fit.energies), path=np.asarray(fit.path),
        fit_path=np.asarray(fit.fit_path), fit_energies=np.asarray(fit.fit_energies),
        hh_distance=np.linalg.norm(h[:, 1] - h[:, 0], axis=1), height=h[:, :, 2].mean(axis=1) - top,
    )
