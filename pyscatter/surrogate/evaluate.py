"""Stage 5, ``evaluate``: the surrogate against the teacher (``errors.json``, ``report.md``).

MAE/RMSE of energies (meV/atom), forces and forces on H (meV/Å) on the held-out frames (all, reactive,
the held-out MEP samples and the held-out separate H atoms in and on the slab), the molecule-surface
interaction energy of the held-out approach pairs (meV), the surrogate's CI-NEB barrier against the
teacher's (eV, with both bands' residual forces), and the CPU cost of one force call of either (ms).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from pyscatter.models.base import ForceModel, Frame
from pyscatter.surrogate.frames import label, load_frames, load_mep_samples, load_neb, pick
from pyscatter.surrogate.placed import APPROACH, ATOMS
from pyscatter.initial.dissociation import minimum_energy_path
from pyscatter.surrogate.paths import band_residual
from pyscatter.surrogate.settings import Progress, SurrogateSettings

REACTIVE_HH = 1.0  # Å: a held-out frame with a longer H-H distance counts as reactive
REACTIVE_HEIGHT = 2.0  # Å: ... or with an H atom closer than this to the top layer

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


def interaction_errors(pairs: list, energies: np.ndarray) -> dict:
    """Error of the molecule-surface interaction energy, E(molecule over the slab) - E(molecule out of range), of
    ``pairs`` (Atoms, in pairs, from :mod:`pyscatter.surrogate.placed`) with model ``energies`` (eV):
    mean, RMSE and largest error (meV), and the teacher's interaction range (meV)."""
    teacher = np.array([a.info["energy"] for a in pairs])
    own = energies[0::2] - energies[1::2]
    reference = teacher[0::2] - teacher[1::2]
    error = 1e3 * (own - reference)
    return {"pairs": len(error), "mean_meV": float(error.mean()), "rmse_meV": float(np.sqrt(np.mean(error**2))),
            "max_abs_meV": float(np.abs(error).max()), "teacher_min_meV": 1e3 * float(reference.min()),
            "teacher_max_meV": 1e3 * float(reference.max())}


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
        test = pick(frames, z["test"])
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
            mep += pick([samples], np.flatnonzero(held))
        table["held_out_mep"] = error_table(mep, *predict(surrogate, mep))
    separate = [a for placed in load_frames(directory, ATOMS) for a in pick([placed], np.flatnonzero(placed.held_out))]
    if separate:
        table["held_out_atoms"] = error_table(separate, *predict(surrogate, separate))
    interaction = {}
    for pairs in load_frames(directory, APPROACH):
        held = pick([pairs], np.flatnonzero(pairs.held_out))
        interaction[pairs.source[0]] = interaction_errors(held, predict(surrogate, held)[0])
    barriers = {}
    for facet in settings.facets:
        from ase.constraints import FixAtoms

        reference = load_neb(directory, facet)
        images = pick([reference], np.arange(len(reference.energies)))
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
    result = {"errors": table, "interaction": interaction, "barriers": barriers, "timing": timing, "n_atoms": len(test[0])}
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
    if result.get("interaction"):
        lines += ["", "| approach pairs (held out) | pairs | teacher interaction (meV) | mean error (meV) | RMSE (meV) | largest (meV) |",
                  "|---|---|---|---|---|---|"]
        for name, a in result["interaction"].items():
            lines.append(f"| {name} | {a['pairs']} | {a['teacher_min_meV']:.0f} to {a['teacher_max_meV']:.0f} | {a['mean_meV']:+.1f} | "
                         f"{a['rmse_meV']:.1f} | {a['max_abs_meV']:.1f} |")
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
