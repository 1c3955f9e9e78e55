"""H2 dissociation over a bridge site of a frozen ideal Cu slab: its relaxed end points and the CI-NEB path between.

Shared by the barriers of ``pyscatter mep`` (:mod:`pyscatter.mep`) and the surrogate build's teacher paths
(:mod:`pyscatter.surrogate.paths`). Å, eV, eV/Å.
"""

from __future__ import annotations

import numpy as np

from pyscatter.conditions import H2_BOND
from pyscatter.initial.surface import build_slab
from pyscatter.models.base import ForceModel, ModelError
from pyscatter.models.calculator import ForceModelCalculator

SUNK = 1.5
"""Å under the top layer: an H atom of a relaxed dissociation endpoint this deep has fallen into a spurious well
(the teacher's dissociated H lie above -0.4 Å on every facet)."""


def dissociation_endpoints(facet: str, a: float, model: ForceModel, fmax: float = 0.02, steps: int = 300):
    """(initial, final) Atoms of H2 dissociating over a bridge site of the ideal, frozen Cu(facet) slab.

    Initial: H2 at 4 Å above the bridge between the central top-layer atom and its nearest
    top-layer neighbour, bond parallel to the surface and perpendicular to the bridge. Final: the
    two H atoms 1 Å above the top layer, 1.3 Å either side of the bridge. Both relaxed (H only).
    Raises :class:`ModelError` if a relaxation takes an H atom more than ``SUNK`` under the top layer.
    """
    from ase.constraints import FixAtoms
    from ase.optimize import BFGS

    slab = build_slab(facet, a)
    atoms = slab.atoms.copy()
    cell = atoms.cell.array
    top = atoms.positions[slab.top_layer]
    centre = 0.5 * (cell[0] + cell[1])
    first = top[np.argmin(np.linalg.norm(top[:, :2] - centre[:2], axis=1))]
    lateral = []
    for shift in ((i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)):
        images = top + shift[0] * cell[0] + shift[1] * cell[1]
        lateral.append(images)
    others = np.concatenate(lateral)
    gaps = np.linalg.norm(others[:, :2] - first[:2], axis=1)
    gaps[gaps < 1e-6] = np.inf
    second = others[np.argmin(gaps)]
    bridge = 0.5 * (first + second)
    along = (second - first)[:2] / np.linalg.norm((second - first)[:2])
    across = np.array([-along[1], along[0], 0.0])
    z_top = slab.top_layer_height

    def with_h(offset: float, height: float):
        system = atoms.copy()
        base = np.array([bridge[0], bridge[1], z_top + height])
        from ase import Atoms

        system += Atoms("H2", positions=[base - offset * across, base + offset * across])
        system.set_constraint(FixAtoms(indices=range(len(atoms))))
        system.calc = ForceModelCalculator(model)
        BFGS(system, logfile=None).run(fmax=fmax, steps=steps)
        depth = z_top - system.positions[-2:, 2].min()
        if depth > SUNK:
            raise ModelError(f"model {model.name!r}: relaxing H on Cu({facet}) took an H atom {depth:.1f} Å under the top "
                             "layer, into a spurious well of the model; no dissociation path to compute")
        return system

    return with_h(0.5 * H2_BOND, 4.0), with_h(1.3, 1.0)


def minimum_energy_path(initial, final, model: ForceModel, n_images: int, fmax: float, steps: int, path=None):
    """CI-NEB (ASE) between ``initial`` and ``final`` under ``model``; returns the images (Atoms) and energies (eV).

    ``path``: images to start from (same endpoints), default a linear interpolation.
    """
    from ase.mep import NEB
    from ase.optimize import FIRE

    if path is None:
        images = [initial.copy() for _ in range(n_images + 1)] + [final.copy()]
        band = NEB(images, climb=True, allow_shared_calculator=True, method="improvedtangent")
        band.interpolate()
    else:
        images = [p.copy() for p in path]
        for image, constraint in zip(images, [initial.constraints] * len(images)):
            image.set_constraint(constraint)
        band = NEB(images, climb=True, allow_shared_calculator=True, method="improvedtangent")
    calculator = ForceModelCalculator(model)
    for image in images:
        image.calc = calculator
    FIRE(band, logfile=None).run(fmax=fmax, steps=steps)
    energies = np.array([image.get_potential_energy() for image in images])
    return images, energies
