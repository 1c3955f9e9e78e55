"""Stage 3, ``neb`` and ``mep_neighbourhood``: minimum energy paths of H2 dissociation and the data around them.

A CI-NEB path per facet, H2 dissociating over a bridge site of the frozen ideal slab, every image
labelled by the teacher (``neb_Cu<facet>.npz``); randomly displaced copies of every image, labelled
by the teacher (``mep_samples_Cu<facet>.npz``, a quarter held out), since trajectories stop at the
dissociation distance and leave the adsorbed end of the path out of the data; and the teacher's
gas-phase H2 curve (``gas_phase_h2.npz``), which the molecule is quantised on. Å, eV, eV/Å.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pyscatter.conditions import FACETS
from pyscatter.initial.surface import build_slab
from pyscatter.initial.dissociation import dissociation_endpoints, minimum_energy_path
from pyscatter.models.base import ForceModel, Frame, ModelError
from pyscatter.surrogate.frames import label, load_neb, save_npz, teacher_lattice_constant
from pyscatter.surrogate.settings import Progress, SurrogateSettings

def neb(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 3: a teacher CI-NEB MEP per facet, every image labelled (``neb_<facet>.npz``)."""
    for facet in settings.facets:
        path = directory / f"neb_Cu{facet}.npz"
        if path.exists():
            continue
        started = time.perf_counter()
        a = teacher_lattice_constant(directory, teacher, min(settings.temperatures))
        initial, final = dissociation_endpoints(facet, a, teacher, steps=settings.neb_steps)
        images, energies = minimum_energy_path(initial, final, teacher, settings.neb_images, settings.neb_fmax, settings.neb_steps)
        slab = build_slab(facet, a)
        forces = np.stack([image.get_forces(apply_constraint=False) for image in images])
        residual = band_residual(images)
        save_npz(path, positions=np.stack([i.positions for i in images]), energies=energies, forces=forces,
              numbers=images[0].numbers, cell=images[0].cell.array, top_height=slab.top_layer_height, facet=facet,
              residual=residual)
        progress(f"neb Cu({facet}): barrier {energies.max() - energies[0]:.3f} eV over {len(images)} images, "
                 f"residual {residual:.3f} eV/Å, {time.perf_counter() - started:.0f} s")


def band_residual(images) -> float:
    """Largest CI-NEB force on any atom of the band ``images`` (with calculators), eV/Å: converged if <= fmax."""
    from ase.mep import NEB

    band = NEB(images, climb=True, allow_shared_calculator=True, method="improvedtangent")
    return float(np.linalg.norm(band.get_forces(), axis=1).max())


def mep_neighbourhood(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 3b: ``mep_samples`` random structures near each segment of the teacher's MEP, labelled by the teacher.

    Trajectories stop once H-H exceeds the dissociation distance, so the adsorbed end of the path
    (H-H near 2.6 Å, H within 1 Å of the top layer) and the band around the MEP are otherwise thin
    or absent in the data. Copy k of image i is a uniformly random point on the straight segment
    from image i to image i + 1 (the final image itself for the last one), its H atoms displaced by
    Gaussian noise of ``mep_rattle`` Å per component and its Cu atoms by a third of that; copies
    with k % 4 == 3 are held out. Written to ``mep_samples_Cu<facet>.npz`` (``held_out``: (M,) bool).
    """
    if settings.mep_samples == 0:
        return
    for facet in settings.facets:
        path = directory / f"mep_samples_Cu{facet}.npz"
        if path.exists():
            continue
        started = time.perf_counter()
        reference = load_neb(directory, facet)
        rng = np.random.default_rng([settings.seed, FACETS.index(facet)])
        sigma = np.where(reference.numbers == 1, settings.mep_rattle, settings.mep_rattle / 3.0)[:, None]
        start = np.repeat(reference.positions, settings.mep_samples, axis=0)
        end = np.repeat(np.concatenate([reference.positions[1:], reference.positions[-1:]]), settings.mep_samples, axis=0)
        along = rng.random(len(start))[:, None, None]
        positions = start + along * (end - start) + sigma * rng.normal(size=start.shape)
        frame = Frame(reference.numbers, reference.cell, (True, True, False))
        energies, forces = label(teacher, frame, positions, settings.batch_size)
        held_out = np.tile(np.arange(settings.mep_samples) % 4 == 3, len(reference.energies))
        save_npz(path, positions=positions, energies=energies, forces=forces, numbers=reference.numbers, cell=reference.cell,
              top_height=reference.top_height[0], facet=facet, held_out=held_out)
        progress(f"mep samples Cu({facet}): {len(positions)} teacher-labelled frames, {time.perf_counter() - started:.0f} s")



def gas_phase_h2(directory: Path, teacher: ForceModel | Callable[[], ForceModel], cutoff: float) -> list:
    """Isolated H2 at 80 bond lengths from 0.3 Å to ``cutoff`` + 1 Å, labelled by the teacher (a model, or a function
    that loads it, called only when ``gas_phase_h2.npz`` in ``directory`` is missing).

    The curve :func:`pyscatter.initial.molecule.diatomic_potential` quantises the molecule on, so
    the surrogate's gas-phase well follows the teacher's (trajectory frames hold no free H2 at
    short or long bond lengths).
    """
    from ase import Atoms

    from pyscatter.initial.molecule import _tabulate

    path = directory / "gas_phase_h2.npz"
    if not path.exists():
        r = np.linspace(0.3, cutoff + 1.0, 80)
        energies, slopes = _tabulate(teacher if isinstance(teacher, ForceModel) else teacher(), (1, 1), r)
        save_npz(path, r=r, energies=energies, slopes=slopes)
    with np.load(path) as z:
        r, energies, slopes = z["r"], z["energies"], z["slopes"]
    out = []
    for length, energy, slope in zip(r, energies, slopes):
        atoms = Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, length]], cell=np.eye(3) * 30.0, pbc=False)
        atoms.info["energy"] = float(energy)
        atoms.arrays["forces"] = np.array([[0.0, 0.0, slope], [0.0, 0.0, -slope]])
        out.append(atoms)
    return out
