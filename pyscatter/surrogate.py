"""Surrogate workflow of Stark et al. (2023): a teacher model's data, a linear ACE fit, its errors.

Stages, each resumable (its result is a file in the build directory, reused when present):

1. ``sample``: teacher trajectories through pyscatter's own engine over facets x surface
   temperatures x states (v, J) x collision energies; the teacher's energies and forces of every
   structure are recorded every ``record_every_fs`` (``frames/<condition>.npz``).
2. ``select``: k-means on a structural descriptor of the H atoms; the frame nearest each
   centroid trains, a random disjoint set of other frames (which include reactive ones) is held
   out (``selection.npz``).
3. ``neb``: a CI-NEB minimum-energy path per facet, H2 dissociating over a bridge site of the
   frozen ideal slab, every image labelled by the teacher (``neb_<facet>.npz``); and the
   teacher's gas-phase H2 curve (``gas_phase_h2.npz``), which the molecule is quantised on.
   ``mep_neighbourhood``: randomly displaced copies of every MEP image, labelled by the teacher
   (``mep_samples_<facet>.npz``; a quarter held out): trajectories end at the dissociation
   distance, so without them the adsorbed end of the path is missing from the data.
4. ``fit``: a linear ACE model built and fitted with ace-jax (design rows from
   ``ace_jax.fit.rows.linear_rows``; weighted least squares with ace-jax's smoothness prior,
   its strength chosen on a validation split) -> ``model.npz``.
5. ``evaluate``: MAE/RMSE of energies, forces and forces on H against the teacher on the held-out
   frames (all, reactive, and the held-out MEP samples), the surrogate's CI-NEB barrier against the
   teacher's (with both bands' residual forces), and the cost of one force call of either
   (``errors.json``, ``report.md``).

Units: Å, eV, fs, K; energies per atom in the error table are meV/atom, forces meV/Å.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from pyscatter.conditions import RunSpec
from pyscatter.initial.surface import FACETS, build_slab, lattice_constant
from pyscatter.models.base import (
    ForceModel,
    Frame,
    ModelError,
    ModelOutput,
    check_species,
)

H2_BOND = 0.7414  # Å, r0 of the H-H pairs of the default basis
CU_BOND = 2.6  # Å, ace-jax's tabulated Cu length scale
REACTIVE_HH = 1.0  # Å: a held-out frame with a longer H-H distance counts as reactive
REACTIVE_HEIGHT = 2.0  # Å: ... or with an H atom closer than this to the top layer


class SurrogateError(ValueError):
    """Settings or a build directory that cannot be used; the message is one line."""


@dataclass(frozen=True)
class SurrogateSettings:
    """Everything a build depends on (defaults: the paper's workflow sized for a workstation).

    Sampling: facets, temperatures (K), states ((v, J), ...), collision_energies (eV),
    trajectories per condition, dt and max_time (fs), record_every_fs, initial_height (Å),
    n_snapshots thermal slabs per (facet, T), equilibration_fs of their Langevin chains.
    Selection: n_train k-means frames, n_test held-out frames.
    NEB: neb_images (intermediate images), neb_fmax (eV/Å), neb_steps; mep_samples displaced
    copies per MEP image, H displaced by mep_rattle (Å, Gaussian, per component), Cu by a third.
    Fit: cutoff (Å), order (correlation order), max_degree (ace-jax TotalDegree level bound),
    energy_weight (per-atom energy rows relative to force rows; 100 gave the shipped surrogate its Cu(111)
    and Cu(211) barriers: 30 missed them by -37 and +53 meV, 300 doubled the H-force error), validation_fraction.
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
    validation_fraction: float = 0.1
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
        if self.record_every_fs < self.dt:
            raise SurrogateError(f"record_every_fs ({self.record_every_fs}) must be >= dt ({self.dt})")

    def as_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


Progress = Callable[[str], None]


# ----------------------------------------------------------------------------- sampling


class RecordingModel:
    """A :class:`ForceModel` that passes calls to ``model`` and keeps every ``every``-th call's structures and labels."""

    def __init__(self, model: ForceModel, every: int):
        self.model, self.every = model, int(every)
        for name in ("name", "species", "cutoff", "dtype", "identity"):
            setattr(self, name, getattr(model, name))
        self.calls = 0
        self.positions: list[np.ndarray] = []
        self.energies: list[np.ndarray] = []
        self.forces: list[np.ndarray] = []

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        out = self.model(frame, positions, compute_forces)
        if compute_forces and self.calls % self.every == 0:
            self.positions.append(positions.detach().cpu().numpy().copy())
            self.energies.append(out.energies.detach().cpu().numpy().copy())
            self.forces.append(out.forces.detach().cpu().numpy().copy())
        self.calls += 1
        return out

    def frames(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct recorded structures (idle slots repeat theirs): positions (M, N, 3), energies (M,), forces (M, N, 3)."""
        pos, e, f = (np.concatenate(a) for a in (self.positions, self.energies, self.forces))
        _, first = np.unique(pos.reshape(len(pos), -1), axis=0, return_index=True)
        keep = np.sort(first)
        return pos[keep], e[keep], f[keep]


def condition_name(facet: str, temperature: float, state: tuple[int, int], energy: float) -> str:
    return f"Cu{facet}_{temperature:g}K_v{state[0]}J{state[1]}_E{energy:g}"


def sample(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 1: record teacher trajectories of every condition (skips conditions already on disk)."""
    from pyscatter.engine.runner import run_dynamics
    from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
    from pyscatter.initial.thermal import load_or_thermalise

    for sub in ("frames", "thermal"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    every = max(1, round(settings.record_every_fs / settings.dt))
    conditions = [(f, t, s, e) for f in settings.facets for t in settings.temperatures for s in settings.states for e in settings.collision_energies]
    for k, (facet, temperature, state, energy) in enumerate(conditions, 1):
        name = condition_name(facet, temperature, state, energy)
        path = directory / "frames" / f"{name}.npz"
        if path.exists():
            continue
        spec = RunSpec(
            surface=facet, temperature=temperature, v=state[0], J=state[1], seed=settings.seed, dt=settings.dt,
            max_time=settings.max_time, initial_height=settings.initial_height, n_snapshots=settings.n_snapshots,
        )
        slab = build_slab(facet, _lattice_constant(directory, teacher, temperature))
        snapshots = load_or_thermalise(
            directory / "thermal" / f"Cu{facet}_{temperature:g}K.npz", teacher, slab, temperature, settings.n_snapshots,
            settings.seed, equilibration_fs=settings.equilibration_fs,
        )
        initial = build_initial_conditions(spec, energy, slab, snapshots, quantised_molecule(spec, teacher))
        recorder = RecordingModel(teacher, every)
        started = time.perf_counter()
        run_dynamics(
            recorder, initial, range(settings.trajectories), lambda results, calls: None, settings.batch_size,
            dt=settings.dt, max_time=settings.max_time,
        )
        positions, energies, forces = recorder.frames()
        _save(path, positions=positions, energies=energies, forces=forces, numbers=initial.frame.numbers,
              cell=initial.frame.cell, top_height=slab.top_layer_height, facet=facet)
        progress(f"sample {k}/{len(conditions)} {name}: {len(positions)} frames, {recorder.calls} teacher calls, {time.perf_counter() - started:.0f} s")


def _lattice_constant(directory: Path, teacher: ForceModel, temperature: float) -> float:
    """The teacher's lattice constant at ``temperature`` (K), Å, cached in ``lattice.json``."""
    path = directory / "lattice.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    key = f"{temperature:g}"
    if key not in table:
        table[key] = lattice_constant(teacher, temperature)
        path.write_text(json.dumps(table, indent=1))
    return float(table[key])


def _save(path: Path, **arrays) -> None:
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


@dataclass
class Frames:
    """Labelled structures of one frame layout: positions (M, N, 3) Å, energies (M,) eV, forces (M, N, 3) eV/Å."""

    numbers: np.ndarray
    cell: np.ndarray
    positions: np.ndarray
    energies: np.ndarray
    forces: np.ndarray
    top_height: np.ndarray  # (M,) Å, mean top-layer height of the ideal slab
    source: list[str] = field(default_factory=list)  # (M,) condition name


def load_frames(directory: Path) -> list[Frames]:
    """All recorded frames, one :class:`Frames` per condition file (sorted by name)."""
    out = []
    for path in sorted((directory / "frames").glob("*.npz")):
        if path.name.endswith(".partial.npz"):
            continue
        with np.load(path) as z:
            m = len(z["energies"])
            out.append(Frames(z["numbers"], z["cell"], z["positions"], z["energies"], z["forces"],
                              np.full(m, float(z["top_height"])), [path.stem] * m))
    return out


# ---------------------------------------------------------------------------- selection


def descriptor(numbers: np.ndarray, cell: np.ndarray, positions: np.ndarray, top_height: np.ndarray) -> np.ndarray:
    """Structural descriptor of the H atoms, (M, 9): H-H distance, both H heights above the top
    layer (sorted), and each H atom's three shortest H-Cu distances (minimum image in the surface
    plane; sorted within each atom, atoms ordered by height). Å."""
    h = np.flatnonzero(numbers == 1)
    cu = np.flatnonzero(numbers == 29)
    if len(h) != 2:
        raise SurrogateError(f"frames must hold exactly two H atoms, got {len(h)}")
    inverse = np.linalg.inv(cell)

    def lateral_minimum_image(d: np.ndarray) -> np.ndarray:
        frac = d @ inverse
        frac[..., :2] -= np.round(frac[..., :2])
        return np.linalg.norm(frac @ cell, axis=-1)

    hh = lateral_minimum_image(positions[:, h[1]] - positions[:, h[0]])
    heights = positions[:, h, 2] - top_height[:, None]
    d = positions[:, h, None, :] - positions[:, None, cu, :]  # (M, 2, Ncu, 3)
    dist = np.sort(lateral_minimum_image(d), axis=-1)[..., :3]  # (M, 2, 3)
    order = np.argsort(heights, axis=1)
    rows = np.arange(len(positions))[:, None]
    return np.column_stack([hh, heights[rows, order], dist[rows, order].reshape(len(positions), 6)])


def select(directory: Path, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 2: k-means selection of training frames and a disjoint random held-out set."""
    from scipy.cluster.vq import kmeans2

    path = directory / "selection.npz"
    if path.exists():
        return
    frames = load_frames(directory)
    if not frames:
        raise SurrogateError(f"{directory}: no teacher frames to select from")
    x = np.concatenate([descriptor(f.numbers, f.cell, f.positions, f.top_height) for f in frames])
    total = len(x)
    n_train = min(settings.n_train, total)
    z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    centroids, label = kmeans2(z, n_train, seed=settings.seed, minit="++")
    train = []
    for c in range(len(centroids)):
        members = np.flatnonzero(label == c)
        if len(members):
            train.append(members[np.argmin(((z[members] - centroids[c]) ** 2).sum(axis=1))])
    train = np.unique(train)
    rest = np.setdiff1d(np.arange(total), train)
    if len(rest) == 0:
        raise SurrogateError(f"{directory}: all {total} frames were selected for training; none left to hold out")
    rng = np.random.default_rng(settings.seed)
    test = np.sort(rng.choice(rest, size=min(settings.n_test, len(rest)), replace=False))
    _save(path, train=train, test=test)
    progress(f"select: {len(train)} training frames (k-means of {total}), {len(test)} held out")


def _pick(frames: list[Frames], indices: np.ndarray) -> list:
    """ASE Atoms (with energy and forces in info/arrays) of global frame ``indices``."""
    from ase import Atoms

    offsets = np.cumsum([0] + [len(f.energies) for f in frames])
    out = []
    for g in indices:
        k = int(np.searchsorted(offsets, g, side="right") - 1)
        f, i = frames[k], int(g - offsets[k])
        atoms = Atoms(numbers=f.numbers, positions=f.positions[i], cell=f.cell, pbc=(True, True, False))
        atoms.info.update(energy=float(f.energies[i]), top_height=float(f.top_height[i]), source=f.source[i])
        atoms.arrays["forces"] = f.forces[i].copy()
        out.append(atoms)
    return out


# --------------------------------------------------------------------------------- NEB


class ForceModelCalculator(Calculator):
    """A :class:`ForceModel` as an ASE calculator (one structure per call; energy eV, forces eV/Å)."""

    implemented_properties = ("energy", "free_energy", "forces")

    def __init__(self, model: ForceModel):
        super().__init__()
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        positions = torch.as_tensor(self.atoms.positions[None], dtype=torch.float64)
        out = self.model(Frame.from_atoms(self.atoms), positions)
        energy = float(out.energies[0])
        self.results = {"energy": energy, "free_energy": energy, "forces": out.forces[0].numpy().copy()}


def dissociation_endpoints(facet: str, a: float, model: ForceModel, fmax: float = 0.02, steps: int = 300):
    """(initial, final) Atoms of H2 dissociating over a bridge site of the ideal, frozen Cu(facet) slab.

    Initial: H2 at 4 Å above the bridge between the central top-layer atom and its nearest
    top-layer neighbour, bond parallel to the surface and perpendicular to the bridge. Final: the
    two H atoms 1 Å above the top layer, 1.3 Å either side of the bridge. Both relaxed (H only).
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


def neb(directory: Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 3: a teacher CI-NEB MEP per facet, every image labelled (``neb_<facet>.npz``)."""
    for facet in settings.facets:
        path = directory / f"neb_Cu{facet}.npz"
        if path.exists():
            continue
        started = time.perf_counter()
        a = _lattice_constant(directory, teacher, min(settings.temperatures))
        initial, final = dissociation_endpoints(facet, a, teacher, steps=settings.neb_steps)
        images, energies = minimum_energy_path(initial, final, teacher, settings.neb_images, settings.neb_fmax, settings.neb_steps)
        slab = build_slab(facet, a)
        forces = np.stack([image.get_forces(apply_constraint=False) for image in images])
        residual = band_residual(images)
        _save(path, positions=np.stack([i.positions for i in images]), energies=energies, forces=forces,
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
        _save(path, positions=positions, energies=energies, forces=forces, numbers=reference.numbers, cell=reference.cell,
              top_height=reference.top_height[0], facet=facet, held_out=held_out)
        progress(f"mep samples Cu({facet}): {len(positions)} teacher-labelled frames, {time.perf_counter() - started:.0f} s")


def load_mep_samples(directory: Path, facet: str) -> tuple[Frames, np.ndarray]:
    """The displaced MEP copies of ``facet`` and their held-out flags (M,)."""
    with np.load(directory / f"mep_samples_Cu{facet}.npz") as z:
        m = len(z["energies"])
        frames = Frames(z["numbers"], z["cell"], z["positions"], z["energies"], z["forces"],
                        np.full(m, float(z["top_height"])), [f"mep_Cu{facet}"] * m)
        return frames, z["held_out"].copy()


def load_neb(directory: Path, facet: str) -> Frames:
    with np.load(directory / f"neb_Cu{facet}.npz") as z:
        m = len(z["energies"])
        return Frames(z["numbers"], z["cell"], z["positions"], z["energies"], z["forces"], np.full(m, float(z["top_height"])), [f"neb_Cu{facet}"] * m)


def gas_phase_h2(directory: Path, teacher: ForceModel, settings: SurrogateSettings) -> list:
    """Isolated H2 at bond lengths from 0.3 Å to cutoff + 1 Å, labelled by the teacher (``gas_phase_h2.npz``).

    The curve :func:`pyscatter.initial.molecule.diatomic_potential` quantises the molecule on, so
    the surrogate's gas-phase well follows the teacher's (trajectory frames hold no free H2 at
    short or long bond lengths).
    """
    from ase import Atoms

    from pyscatter.initial.molecule import _tabulate

    path = directory / "gas_phase_h2.npz"
    if not path.exists():
        r = np.linspace(0.3, settings.cutoff + 1.0, 80)
        energies, slopes = _tabulate(teacher, (1, 1), r)
        _save(path, r=r, energies=energies, slopes=slopes)
    with np.load(path) as z:
        r, energies, slopes = z["r"], z["energies"], z["slopes"]
    out = []
    for length, energy, slope in zip(r, energies, slopes):
        atoms = Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, length]], cell=np.eye(3) * 30.0, pbc=False)
        atoms.info["energy"] = float(energy)
        atoms.arrays["forces"] = np.array([[0.0, 0.0, slope], [0.0, 0.0, -slope]])
        out.append(atoms)
    return out


# --------------------------------------------------------------------------------- fit


def default_r0(elements: list[int]) -> np.ndarray:
    """Per-pair radial length scale (Å) of the basis: mean of the two elements' bond lengths (H2: 0.74, Cu: 2.6)."""
    bond = {1: H2_BOND, 29: CU_BOND}
    return np.array([[0.5 * (bond[a] + bond[b]) for b in elements] for a in elements])


def fit_ace(train: list, settings: SurrogateSettings, out: Path, progress: Progress) -> dict:
    """Fit a linear ACE model with ace-jax to labelled Atoms ``train``; writes ``out`` (npz). Returns fit info.

    Rows: per-atom energies weighted by ``energy_weight``, force components by 1. Prior: ace-jax's
    smoothness prior Gamma (``Basis.gamma``), coefficients c = argmin |W(Ac - y)|^2 + lam |Gamma c|^2
    with lam chosen on a random ``validation_fraction`` of the training frames, then refitted on all.
    """
    import jax
    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model
    from ace_jax.eval import load
    from ace_jax.fit.data import build_dataset, load_configs
    from ace_jax.fit.inducing import GPConfig
    from ace_jax.fit.pipeline.data import lsq_e0
    from ace_jax.fit.pipeline.export import linear_arrays_from_mean
    from ace_jax.fit.rows import linear_rows

    started = time.perf_counter()
    elements = [1, 29]
    basis = build_model(elements, settings.order, settings.max_degree, rcut=settings.cutoff, r0=default_r0(elements))
    buffer = io.BytesIO()
    save_npz(buffer, basis)
    buffer.seek(0)
    model, meta, arrays = load(buffer)
    configs = load_configs(train)
    e0 = lsq_e0(configs, elements, float(meta["rcut"]), log=lambda *a: None)
    batch = 8
    dataset = build_dataset(configs, meta, e0, batch, pack="off", log=lambda *a: None)
    cfg = GPConfig(r0=1.0, rcut=float(meta["rcut"]), n_B=meta["n_B"], n_pair=meta["n_pair"], NZ=len(elements), C=batch)
    rows = jax.jit(lambda m, b: linear_rows(m, cfg, b)[0])
    n_columns = cfg.len_basis
    rng = np.random.default_rng(settings.seed)
    validation = rng.random(len(configs)) < settings.validation_fraction
    normal = {False: np.zeros((n_columns, n_columns)), True: np.zeros((n_columns, n_columns))}
    rhs = {False: np.zeros(n_columns), True: np.zeros(n_columns)}
    held_a, held_y = [], []
    for k in range(dataset.n_batches):
        b = jax.tree.map(lambda a, k=k: a[k], dataset)
        r = rows(model, b)
        members = np.asarray(b.cfg_mask)
        config_index = k * batch + np.arange(batch)
        is_val = np.where(members, validation[np.minimum(config_index, len(configs) - 1)], False)
        weight_e = settings.energy_weight / np.maximum(np.asarray(b.n_atoms), 1.0) * members
        node_cfg = np.asarray(b.node_cfg)
        node_val = np.append(is_val, False)[node_cfg]
        weight_f = np.repeat(np.asarray(b.node_mask, float), 3)
        a = np.concatenate([np.asarray(r.E) * weight_e[:, None], np.asarray(r.F).reshape(-1, n_columns) * weight_f[:, None]])
        y = np.concatenate([np.asarray(b.y_E) * weight_e, np.asarray(b.y_F).reshape(-1) * weight_f])
        in_val = np.concatenate([is_val, np.repeat(node_val, 3)])
        for flag in (False, True):
            rows_of = in_val == flag
            normal[flag] += a[rows_of].T @ a[rows_of]
            rhs[flag] += a[rows_of].T @ y[rows_of]
        held_a.append(a[in_val])
        held_y.append(y[in_val])
        if k % 20 == 0:
            progress(f"fit: design rows {min((k + 1) * batch, len(configs))}/{len(configs)} frames")
    held_a, held_y = np.concatenate(held_a), np.concatenate(held_y)
    prior = np.diag(np.asarray(basis.gamma, float) ** 2)
    scale = np.trace(normal[False]) / max(np.trace(prior), 1e-300)
    lambdas = scale * 10.0 ** np.arange(-14.0, -1.0)
    losses = []
    for lam in lambdas:
        c = _solve(normal[False] + lam * prior, rhs[False])
        losses.append(float(np.mean((held_a @ c - held_y) ** 2)) if len(held_y) else 0.0)
    best = lambdas[int(np.argmin(losses))]
    coefficients = _solve(normal[False] + normal[True] + best * prior, rhs[False] + rhs[True])
    np.savez(out, **linear_arrays_from_mean(arrays, e0, cfg, coefficients))
    info = {"n_basis": int(n_columns), "n_train_frames": len(configs), "lambda_over_scale": float(best / scale),
            "validation_rms_weighted": float(np.sqrt(min(losses))), "fit_seconds": time.perf_counter() - started}
    progress(f"fit: {n_columns} basis functions, {len(configs)} frames, {info['fit_seconds']:.0f} s")
    return info


def _solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    try:
        return cho_solve(cho_factor(matrix), rhs)
    except LinAlgError:
        return np.linalg.lstsq(matrix, rhs, rcond=None)[0]


# ------------------------------------------------------------------------------ errors


def label(model: ForceModel, frame: Frame, positions: np.ndarray, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Energies (M,) eV and forces (M, N, 3) eV/Å of ``positions`` (M, N, 3) Å in one ``frame``, ``batch_size`` per call."""
    energies, forces = np.empty(len(positions)), np.empty(positions.shape)
    for start in range(0, len(positions), batch_size):
        out = model(frame, torch.as_tensor(positions[start:start + batch_size], dtype=torch.float64))
        energies[start:start + batch_size] = out.energies.detach().cpu().numpy()
        forces[start:start + batch_size] = out.forces.detach().cpu().numpy()
    return energies, forces


def predict(model: ForceModel, structures: list, batch_size: int = 16) -> tuple[np.ndarray, list[np.ndarray]]:
    """Energies (eV) and forces (eV/Å) of ``structures`` (Atoms, any mix of frames), batched by frame."""
    energies = np.empty(len(structures))
    forces: list[np.ndarray] = [None] * len(structures)  # type: ignore[list-item]
    groups: dict[bytes, list[int]] = {}
    for k, atoms in enumerate(structures):
        groups.setdefault(atoms.numbers.tobytes() + atoms.cell.array.tobytes(), []).append(k)
    for members in groups.values():
        frame = Frame(structures[members[0]].numbers, structures[members[0]].cell.array, (True, True, False))
        e, f = label(model, frame, np.stack([structures[k].positions for k in members]), batch_size)
        for k, ek, fk in zip(members, e, f):
            energies[k], forces[k] = ek, fk
    return energies, forces


def error_table(structures: list, energies: np.ndarray, forces: list[np.ndarray]) -> dict:
    """MAE and RMSE of energy per atom (meV/atom), force components (meV/Å) and H force components (meV/Å)."""
    n = np.array([len(a) for a in structures])
    de = (energies - np.array([a.info["energy"] for a in structures])) / n
    df = np.concatenate([(f - a.arrays["forces"]).ravel() for a, f in zip(structures, forces)])
    dh = np.concatenate([(f - a.arrays["forces"])[a.numbers == 1].ravel() for a, f in zip(structures, forces)])

    def stats(x):
        return {"mae": 1e3 * float(np.mean(np.abs(x))), "rmse": 1e3 * float(np.sqrt(np.mean(x**2))), "n": len(x)}

    return {"energy_meV_per_atom": stats(de), "force_meV_per_A": stats(df), "H_force_meV_per_A": stats(dh), "n_structures": len(structures)}


def is_reactive(atoms) -> bool:
    """H-H longer than ``REACTIVE_HH`` or an H atom lower than ``REACTIVE_HEIGHT`` above the top layer."""
    h = atoms.positions[atoms.numbers == 1]
    return bool(np.linalg.norm(h[1] - h[0]) > REACTIVE_HH or (h[:, 2] - atoms.info["top_height"]).min() < REACTIVE_HEIGHT)


def force_call_ms(model: ForceModel, structure, repeats: int = 20, batch_size: int = 1) -> float:
    """Best CPU time (ms) per structure of an energy+forces call on ``batch_size`` slightly moved copies."""
    rng = np.random.default_rng(0)
    frame = Frame(structure.numbers, structure.cell.array, (True, True, False))
    best = np.inf
    for k in range(repeats + 1):
        x = torch.as_tensor(structure.positions + rng.uniform(-0.02, 0.02, (batch_size, *structure.positions.shape)))
        start = time.process_time()
        model(frame, x)
        if k:  # the first call compiles / builds lists
            best = min(best, time.process_time() - start)
    return 1e3 * best / batch_size


def evaluate(directory: Path, teacher: ForceModel, surrogate: ForceModel, settings: SurrogateSettings, progress: Progress) -> dict:
    """Stage 5: the error table on held-out frames, barriers and timings (``errors.json``)."""
    frames = load_frames(directory)
    with np.load(directory / "selection.npz") as z:
        test = _pick(frames, z["test"])
    reactive = [a for a in test if is_reactive(a)]
    energies, forces = predict(surrogate, test)
    table = {"held_out": error_table(test, energies, forces)}
    if reactive:
        flags = np.array([is_reactive(a) for a in test])
        table["held_out_reactive"] = error_table(reactive, energies[flags], [f for f, r in zip(forces, flags) if r])
    if settings.mep_samples:
        mep = []
        for facet in settings.facets:
            samples, held = load_mep_samples(directory, facet)
            mep += _pick([samples], np.flatnonzero(held))
        table["held_out_mep"] = error_table(mep, *predict(surrogate, mep))
    barriers = {}
    for facet in settings.facets:
        from ase.constraints import FixAtoms

        reference = load_neb(directory, facet)
        images = _pick([reference], np.arange(len(reference.energies)))
        for image in images:
            image.set_constraint(FixAtoms(indices=np.flatnonzero(image.numbers != 1)))
        band, own = minimum_energy_path(images[0], images[-1], surrogate, len(images) - 2, settings.neb_fmax, settings.neb_steps, path=images)
        teacher_barrier = float(reference.energies.max() - reference.energies[0])
        with np.load(directory / f"neb_Cu{facet}.npz") as z:
            teacher_residual = float(z["residual"]) if "residual" in z else float("nan")
        barriers[facet] = {"teacher_eV": teacher_barrier, "surrogate_eV": float(own.max() - own[0]),
                           "difference_meV": 1e3 * (float(own.max() - own[0]) - teacher_barrier),
                           "teacher_residual_eV_per_A": teacher_residual, "surrogate_residual_eV_per_A": band_residual(band)}
    timing = {"teacher_ms": force_call_ms(teacher, test[0], repeats=5), "surrogate_ms": force_call_ms(surrogate, test[0])}
    timing["surrogate_batch_ms_per_structure"] = force_call_ms(surrogate, test[0], repeats=5, batch_size=settings.batch_size)
    timing["ratio"] = timing["teacher_ms"] / timing["surrogate_ms"]
    result = {"errors": table, "barriers": barriers, "timing": timing, "n_atoms": len(test[0])}
    (directory / "errors.json").write_text(json.dumps(result, indent=1))
    (directory / "report.md").write_text(format_report(result))
    progress(format_report(result))
    return result


def format_report(result: dict) -> str:
    """The error table (Table 1 form), barriers and timings as markdown."""
    lines = ["| set | structures | E MAE | E RMSE (meV/atom) | F MAE | F RMSE (meV/Å) | F(H) MAE | F(H) RMSE (meV/Å) |", "|---|---|---|---|---|---|---|---|"]
    for name, t in result["errors"].items():
        e, f, h = t["energy_meV_per_atom"], t["force_meV_per_A"], t["H_force_meV_per_A"]
        lines.append(f"| {name} | {t['n_structures']} | {e['mae']:.2f} | {e['rmse']:.2f} | {f['mae']:.1f} | {f['rmse']:.1f} | {h['mae']:.1f} | {h['rmse']:.1f} |")
    lines += ["", "| facet | teacher barrier (eV) | surrogate barrier (eV) | difference (meV) | CI-NEB residual teacher / surrogate (eV/Å) |",
              "|---|---|---|---|---|"]
    for facet, b in result["barriers"].items():
        residuals = f"{b.get('teacher_residual_eV_per_A', float('nan')):.3f} / {b.get('surrogate_residual_eV_per_A', float('nan')):.3f}"
        lines.append(f"| Cu({facet}) | {b['teacher_eV']:.3f} | {b['surrogate_eV']:.3f} | {b['difference_meV']:+.0f} | {residuals} |")
    t = result["timing"]
    timing = (f"Force call, {result['n_atoms']} atoms, CPU time: teacher {t['teacher_ms']:.1f} ms, surrogate "
              f"{t['surrogate_ms']:.2f} ms (batch: {t['surrogate_batch_ms_per_structure']:.2f} ms per structure); ratio {t['ratio']:.1f}x")
    lines += ["", timing]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the build


def build(directory: str | Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress = print) -> dict:
    """Run (or resume) every stage in ``directory``; returns the evaluation (see :func:`evaluate`)."""
    from pyscatter.models.ace import load_ace

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    check_species(teacher, np.array([1, 29]))
    recorded = directory / "settings.json"
    wanted = {"settings": settings.as_dict(), "teacher": teacher.identity}
    if recorded.exists():
        if json.loads(recorded.read_text()) != wanted:
            raise SurrogateError(f"{directory} holds a build with other settings or another teacher; use a new --out")
    else:
        recorded.write_text(json.dumps(wanted, indent=1))
    sample(directory, teacher, settings, progress)
    select(directory, settings, progress)
    neb(directory, teacher, settings, progress)
    mep_neighbourhood(directory, teacher, settings, progress)
    model_path = directory / "model.npz"
    if not model_path.exists():
        frames = load_frames(directory)
        with np.load(directory / "selection.npz") as z:
            train = _pick(frames, z["train"])
        nebs = [load_neb(directory, f) for f in settings.facets]
        train += [a for n in nebs for a in _pick([n], np.arange(len(n.energies)))]
        if settings.mep_samples:
            for facet in settings.facets:
                samples, held = load_mep_samples(directory, facet)
                train += _pick([samples], np.flatnonzero(~held))
        train += gas_phase_h2(directory, teacher, settings)
        info = fit_ace(train, settings, directory / "model.partial.npz", progress)
        (directory / "fit.json").write_text(json.dumps(info, indent=1))
        (directory / "model.partial.npz").replace(model_path)
    errors = directory / "errors.json"
    if errors.exists():
        return json.loads(errors.read_text())
    try:
        surrogate = load_ace(model_path)
    except ModelError as err:
        raise SurrogateError(f"{model_path}: {err}") from err
    return evaluate(directory, teacher, surrogate, settings, progress)
