"""``surrogate committee``: K readout vectors of a linear ACE model drawn from its posterior, in one file.

A linear ACE model is its readout vector c (ace-jax's column layout: many-body readouts of each element,
then pair readouts of each element). The weighted least-squares fit of :func:`pyscatter.surrogate.fit.fit_ace`
defines, in the row space of :func:`pyscatter.surrogate.fit.design_rows` (rows A, targets y), the Hessian
H = A^T A + lam diag(Gamma^2). Two posteriors around c (:class:`Posterior`):

- ``pops`` (default): POPS, Swinburne & Perez, Mach. Learn.: Sci. Technol. (2025), "Parameter uncertainties
  for imperfect surrogate models in the low-noise regime". For each row a_i with error e_i = y_i - a_i c, the
  correction of least H-norm that fits it exactly is d_i = e_i H^-1 a_i / (a_i H^-1 a_i); the corrections'
  principal components bound a box (the larger of each mode's two bounds on either side, so the box is
  centred on c), sampled uniformly. The teacher is deterministic: what the surrogate misses is
  misspecification, which does not shrink with more data, and POPS keeps it.
- ``bayes``: Gaussian, covariance s2 H^-1 with s2 the mean squared weighted residual: the ridge fit read as
  Bayesian linear regression. It shrinks as 1/n_rows and is overconfident for a misspecified model.

Members are drawn in antithetic pairs c +- d, so their mean is exactly c (the file's own readout: the
committee file is still the single model it was drawn from), deviations multiplied by the calibration scale.
The posterior comes from the build (``model.posterior.npz`` beside the model: :func:`save_posterior`) when
present, else from teacher-labelled frames of short surrogate trajectories at the validation conditions
(:func:`teacher_frames`), split by trajectory into a posterior part and a held-out calibration part.
Units: Å, eV, eV/Å.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from pyscatter.models.base import ForceModel, Frame
from pyscatter.surrogate.fit import design_rows, posterior_path
from pyscatter.surrogate.frames import Frames, label, load_frames, pick, save_npz
from pyscatter.surrogate.posterior import Posterior, RowSample, load_posterior, save_posterior
from pyscatter.surrogate.settings import Progress, SurrogateError

METHODS = ("pops", "bayes")
DEFAULT_MEMBERS = 8
MODE_THRESHOLD = 1e-8
"""POPS keeps the principal modes of the corrections whose squared singular value is above this fraction of the largest."""
COVERAGE_Z = (1.0, 2.0)
"""Coverage is reported for |teacher - mean| <= z sd at each of these z."""
TARGET_COVERAGE = 0.95
"""The calibration scale makes |teacher - mean| <= 2 sd hold for this fraction of the held-out values."""
GAS_HELD_OUT = 4
"""Every this-many-th point of the gas-phase H2 curve is held out for calibration."""


def bayes_deviations(post: Posterior, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws (n, P) from N(0, residual H^-1): Bayesian linear regression's posterior around the fit."""
    from scipy.linalg import cholesky, solve_triangular

    upper = cholesky(post.hessian())  # H = U^T U, so U^-1 z has covariance H^-1
    return np.sqrt(post.residual) * solve_triangular(upper, rng.standard_normal((len(post.rhs), n))).T


def pops_corrections(post: Posterior) -> np.ndarray:
    """The pointwise corrections (M, P): d_i = e_i H^-1 a_i / (a_i H^-1 a_i), the least H-norm change fitting row i exactly."""
    from scipy.linalg import cho_factor, cho_solve

    solved = cho_solve(cho_factor(post.hessian()), post.rows.T).T  # (M, P)
    leverage = np.einsum("mp,mp->m", post.rows, solved)
    usable = leverage > 0
    return solved[usable] * (post.errors[usable] / leverage[usable])[:, None]


def pops_deviations(post: Posterior, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws (n, P) uniform in the POPS box: the corrections' principal modes (above :data:`MODE_THRESHOLD`),
    on each mode the larger of the corrections' two extreme projections on either side of the fit."""
    corrections = pops_corrections(post)
    _, singular, modes = np.linalg.svd(corrections, full_matrices=False)
    modes = modes[singular**2 > MODE_THRESHOLD * singular[0] ** 2]
    projected = corrections @ modes.T
    half = np.maximum(projected.max(0), -projected.min(0))
    return rng.uniform(-1.0, 1.0, (n, len(half))) * half @ modes


def draw_members(post: Posterior, members: int, method: str, seed: int) -> np.ndarray:
    """``members`` (even) readout deviations (members, P) from the fit, in antithetic pairs (+d, -d): mean exactly 0."""
    if members < 2 or members % 2:
        raise SurrogateError(f"members must be even and >= 2 (antithetic pairs), got {members}")
    if method not in METHODS:
        raise SurrogateError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    draw = pops_deviations if method == "pops" else bayes_deviations
    half = draw(post, members // 2, np.random.default_rng(seed))
    return np.stack([half, -half], 1).reshape(members, -1)


def readout_vector(arrays) -> np.ndarray:
    """The readout vector c (P,) of an ace-jax linear ACE model's arrays (``WB`` (n_B, NZ), ``Wpair`` (n_pair, NZ))."""
    return np.concatenate([np.asarray(arrays["WB"]).T.ravel(), np.asarray(arrays["Wpair"]).T.ravel()])


def write_committee(model_path: Path, deviations: np.ndarray, out: Path, record: dict) -> None:
    """``model_path``'s arrays (its readout is the committee's mean) plus members c + deviations (K, P) and ``record``."""
    with np.load(model_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("committee_")}
    (n_b, nz), n_pair = arrays["WB"].shape, arrays["Wpair"].shape[0]
    members = readout_vector(arrays) + deviations
    arrays["committee_WB"] = members[:, : nz * n_b].reshape(-1, nz, n_b).transpose(0, 2, 1).copy()
    arrays["committee_Wpair"] = members[:, nz * n_b:].reshape(-1, nz, n_pair).transpose(0, 2, 1).copy()
    arrays["committee_json"] = np.frombuffer(json.dumps({**record, "members": len(members)}).encode(), np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, **arrays)


@dataclass(frozen=True)
class FrameSettings:
    """The teacher-labelled frames: surrogate trajectories (H2 started ``initial_height`` Å above the top layer,
    at most ``max_time`` fs, step ``dt`` fs) at every facet x collision energy (eV) at ``temperature`` K in
    state (v, J); the structures of every ``every``-th force call recorded. Trajectories 0..``posterior``-1
    of each condition make the posterior part, the next ``held_out`` the calibration part."""

    facets: tuple[str, ...] = ("111", "211")
    energies: tuple[float, ...] = (0.3, 0.45, 0.6, 0.85)
    temperature: float = 925.0
    state: tuple[int, int] = (1, 1)
    posterior: int = 12
    held_out: int = 4
    dt: float = 0.5
    max_time: float = 150.0
    initial_height: float = 3.5
    every: int = 20
    snapshots: int = 8
    seed: int = 0


def gas_phase_split(directory: Path, teacher: Callable[[], ForceModel], cutoff: float) -> tuple[list, Frames]:
    """The teacher's isolated-H2 curve (:func:`~pyscatter.surrogate.paths.gas_phase_h2`, to ``cutoff`` + 1 Å): every
    :data:`GAS_HELD_OUT`-th bond length held out (as :class:`Frames`), the rest for the posterior (as Atoms). Surface
    frames hold no H atom without Cu neighbours, so without it the members' gas-phase molecules are unconstrained."""
    from pyscatter.surrogate.paths import gas_phase_h2

    curve = gas_phase_h2(directory, teacher, cutoff)
    held = [a for k, a in enumerate(curve) if k % GAS_HELD_OUT == 0]
    held_out = Frames(held[0].numbers, held[0].cell.array, np.stack([a.positions for a in held]),
                      np.array([a.info["energy"] for a in held]), np.stack([a.arrays["forces"] for a in held]),
                      np.zeros(len(held)), ["gas_phase_h2_heldout"] * len(held))
    return [a for k, a in enumerate(curve) if k % GAS_HELD_OUT], held_out


def teacher_frames(directory: Path, surrogate: ForceModel, teacher: Callable[[], ForceModel], fs: FrameSettings,
                   progress: Progress) -> tuple[list[Frames], list[Frames]]:
    """(posterior, held-out) frames: ``surrogate`` trajectories relabelled by the teacher (``teacher()`` loads it, only
    if a condition is missing: ``frames/*.npz`` in ``directory``, resumable)."""
    from pyscatter.conditions import RunSpec, Termination
    from pyscatter.initial.surface import build_slab, lattice_constant
    from pyscatter.initial.thermal import load_or_thermalise
    from pyscatter.surrogate.sample import record

    (directory / "frames").mkdir(parents=True, exist_ok=True)
    for facet in fs.facets:
        slab = None
        for energy in fs.energies:
            parts = {"posterior": range(fs.posterior), "heldout": range(fs.posterior, fs.posterior + fs.held_out)}
            for part, indices in parts.items():
                path = directory / "frames" / f"Cu{facet}_E{energy:g}_{part}.npz"
                if path.exists():
                    continue
                if slab is None:
                    slab = build_slab(facet, lattice_constant(surrogate, fs.temperature))
                    snapshots = load_or_thermalise(directory / f"thermal_Cu{facet}.npz", surrogate, slab, fs.temperature,
                                                   fs.snapshots, fs.seed)
                spec = RunSpec(surface=facet, temperature=fs.temperature, v=fs.state[0], J=fs.state[1], seed=fs.seed, dt=fs.dt,
                               n_snapshots=fs.snapshots, free_flight=False,
                               termination=Termination(max_time=fs.max_time, initial_height=fs.initial_height))
                frame, (positions, _, _), _ = record(surrogate, spec, energy, slab, snapshots, indices, fs.every, 8)
                started = time.process_time()
                energies, forces = label(teacher(), frame, positions, batch_size=8)
                save_npz(path, positions=positions, energies=energies, forces=forces, numbers=frame.numbers, cell=frame.cell,
                         top_height=slab.top_layer_height)
                progress(f"committee: {path.name}: {len(positions)} frames, teacher {time.process_time() - started:.0f} s CPU")
    frames = load_frames(directory)
    return ([f for f in frames if f.source[0].endswith("_posterior")], [f for f in frames if f.source[0].endswith("_heldout")])


def frames_posterior(model_path: Path, frames: list[Frames], extra: list, energy_weight: float, lambda_over_scale: float,
                     seed: int) -> Posterior:
    """The posterior of the fit in ``model_path`` on teacher-labelled ``frames`` and labelled Atoms ``extra`` (when its
    build kept none): design rows
    of the model's own basis (:func:`~pyscatter.surrogate.fit.design_rows`, energy rows weighted ``energy_weight``
    per atom), ridge strength ``lambda_over_scale`` times trace(A^T A) / sum(Gamma^2) as in the build, errors and
    residual at the model's readout."""
    from ace_jax.eval import load

    model, meta, arrays = load(str(model_path))
    coefficients = readout_vector(arrays)
    structures = pick(frames, np.arange(sum(len(f.energies) for f in frames))) + list(extra)
    normal, rhs, squares, n_rows = 0.0, 0.0, 0.0, 0
    sample = RowSample(seed)
    for a, y, _ in design_rows(model, meta, np.asarray(arrays["E0"]), structures, energy_weight):
        normal, rhs = normal + a.T @ a, rhs + a.T @ y
        squares, n_rows = squares + float(np.sum((y - a @ coefficients) ** 2)), n_rows + len(y)
        sample.add(a, y)
    prior = np.asarray(arrays["gamma"], float) ** 2
    lam = lambda_over_scale * np.trace(normal) / prior.sum()
    return Posterior(normal, rhs, float(lam), prior, squares / n_rows, n_rows, coefficients, *sample.rows(coefficients))


def committee_predictions(model, frames: list[Frames]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Member energies (M, K) eV and forces (C, K) eV/Å (every component of every frame) of the committee ``model``
    (:meth:`~pyscatter.models.ace.ACEModel.committee_energies_forces`) and the teacher's energies (M,) and forces (C,)."""
    energies, forces, teacher_e, teacher_f = [], [], [], []
    for f in frames:
        frame = Frame(f.numbers, f.cell, (True, True, False))
        for start in range(0, len(f.energies), 16):
            out = model.committee_energies_forces(frame, torch.as_tensor(f.positions[start:start + 16]))
            energies.append(out.energies.numpy())
            forces.append(out.forces.numpy().transpose(0, 2, 3, 1).reshape(-1, out.forces.shape[1]))
        teacher_e.append(f.energies)
        teacher_f.append(f.forces.reshape(-1))
    return np.concatenate(energies), np.concatenate(forces), np.concatenate(teacher_e), np.concatenate(teacher_f)


def coverage(members: np.ndarray, reference: np.ndarray, scale: float = 1.0) -> dict:
    """How the spread of ``members`` (n, K) about their mean, times ``scale``, covers ``reference`` (n,): the fraction
    with |reference - mean| <= z sd for each z in :data:`COVERAGE_Z` (sd: root mean square deviation from the
    mean), the median |standardized error| and the RMS error and sd."""
    mean = members.mean(1)
    sd = scale * np.sqrt(np.mean((members - mean[:, None]) ** 2, 1))
    error = np.abs(reference - mean)
    standardized = error / np.maximum(sd, 1e-300)
    out = {f"within_{z:g}sd": float(np.mean(standardized <= z)) for z in COVERAGE_Z}
    out.update(median_standardized=float(np.median(standardized)), rmse=float(np.sqrt(np.mean(error**2))),
               rms_sd=float(np.sqrt(np.mean(sd**2))), n=len(reference))
    return out


def calibration_scale(members: np.ndarray, reference: np.ndarray) -> float:
    """The factor s on the members' deviations for which 2 s sd covers :data:`TARGET_COVERAGE` of |reference - mean|."""
    mean = members.mean(1)
    sd = np.sqrt(np.mean((members - mean[:, None]) ** 2, 1))
    return float(np.quantile(np.abs(reference - mean) / np.maximum(sd, 1e-300), TARGET_COVERAGE) / 2.0)


def fit_provenance(model_path: Path) -> tuple[float, float]:
    """(energy_weight, lambda_over_scale) of the build that fitted ``model_path``: from its provenance JSON beside it
    (a shipped model's ``<name>.json``) or its build directory's ``settings.json`` and ``fit.json``."""
    shipped = model_path.with_suffix(".json")
    if shipped.is_file() and {"settings", "fit"} <= set(record := json.loads(shipped.read_text())):
        return float(record["settings"]["energy_weight"]), float(record["fit"]["lambda_over_scale"])
    build = model_path.parent
    if (build / "settings.json").is_file() and (build / "fit.json").is_file():
        settings = json.loads((build / "settings.json").read_text())["settings"]
        return float(settings["energy_weight"]), float(json.loads((build / "fit.json").read_text())["lambda_over_scale"])
    raise SurrogateError(f"{model_path}: no posterior file, provenance JSON or build directory (settings.json, fit.json) "
                         "says how it was fitted")


def calibration(model, frames: list[Frames]) -> tuple[dict, float]:
    """:func:`coverage` of energies (eV), force components and H force components (eV/Å) of committee ``model`` on
    teacher-labelled ``frames``, and the scale on its deviations that calibrates it: the largest
    :func:`calibration_scale` of the three."""
    energies, forces, teacher_e, teacher_f = committee_predictions(model, frames)
    on_h = np.concatenate([np.tile(np.repeat(f.numbers == 1, 3), len(f.energies)) for f in frames])
    table = {"energy": coverage(energies, teacher_e), "force": coverage(forces, teacher_f),
             "H_force": coverage(forces[on_h], teacher_f[on_h])}
    scale = max(calibration_scale(energies, teacher_e), calibration_scale(forces, teacher_f),
                calibration_scale(forces[on_h], teacher_f[on_h]))
    return table, scale


def build_committee(model_spec: str, out: Path, directory: Path, teacher: Callable[[], ForceModel], members: int = DEFAULT_MEMBERS,
                    method: str = "pops", seed: int = 0, fs: FrameSettings = FrameSettings(),
                    progress: Progress = print) -> dict:
    """Draw a committee of ``members`` around the linear ACE model ``model_spec`` (a shipped name or an ``.npz``),
    calibrate it on held-out teacher frames and write it to ``out``; returns its record (also in the file).

    directory: working directory of the teacher-labelled frames and their posterior (resumable). The posterior
    is the build's (``<model>.posterior.npz``) when present, else that of the posterior frames. The scale s makes 2 s sd cover
    at least :data:`TARGET_COVERAGE` of the held-out energies, force components and H force components (:func:`calibration`).
    """
    from pyscatter.models import SHIPPED, load_model
    from pyscatter.models.ace import load_ace

    model_path = SHIPPED.get(model_spec, Path(model_spec))
    surrogate = load_model(model_spec)
    posterior_frames, held_out = teacher_frames(directory, surrogate, teacher, fs, progress)
    gas_phase, gas_held_out = gas_phase_split(directory, teacher, surrogate.cutoff)
    held_out = held_out + [gas_held_out]
    started = time.process_time()
    readout = readout_vector(np.load(model_path))
    cached = directory / "posterior.npz"
    if posterior_path(model_path).is_file():
        post, source = load_posterior(posterior_path(model_path)), f"the build's posterior ({posterior_path(model_path).name})"
        if not np.allclose(post.coefficients, readout, rtol=0, atol=1e-12):
            raise SurrogateError(f"{posterior_path(model_path)} is the posterior of another fit than {model_path}")
    else:
        post = load_posterior(cached) if cached.is_file() else None
        if post is None or not np.allclose(post.coefficients, readout, rtol=0, atol=1e-12):
            post = frames_posterior(model_path, posterior_frames, gas_phase, *fit_provenance(model_path), seed)
            save_posterior(cached, post)
        source = (f"{sum(len(f.energies) for f in posterior_frames)} teacher-labelled frames of {model_spec} trajectories "
                  f"and {len(gas_phase)} points of the teacher's gas-phase H2 curve")
    deviations = draw_members(post, members, method, seed)
    progress(f"committee: {members} {method} members drawn, {time.process_time() - started:.0f} s CPU")
    record = {"method": method, "posterior": source, "seed": seed, "drawn": "antithetic pairs c +- d",
              "frames": asdict(fs), "model": model_spec}
    write_committee(model_path, deviations, out, {**record, "scale": 1.0})
    before, scale = calibration(load_ace(out), held_out)
    write_committee(model_path, scale * deviations, out, {**record, "scale": scale})
    after, _ = calibration(load_ace(out), held_out)
    record.update(scale=scale, coverage_before=before, coverage_after=after,
                  held_out_frames=sum(len(f.energies) for f in held_out))
    write_committee(model_path, scale * deviations, out, record)
    return {**record, "members": members}
