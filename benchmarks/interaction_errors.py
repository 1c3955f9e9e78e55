"""Where a model's molecule-surface interaction energy departs from its teacher's, by distance to the surface.

On teacher-labelled frames of H2 over Cu (a committee working directory's ``frames/``, written by
``pyscatter surrogate committee --teacher ... --work DIR``), both models evaluate each frame, its slab
alone and its molecule alone. The interaction energy E(slab+H2) - E(slab) - E(H2) carries no error of the
thermal slab or of the gas-phase molecule, so its difference (model - teacher, meV) isolates what decides
sticking: the molecule-surface potential. Rows per facet and shortest H-Cu distance (minimum image, Å),
with the RMS error of the forces on H (meV/Å). Prints a table and writes JSON.

    python benchmarks/interaction_errors.py runs/committee_h2cu-ace [--model h2cu-ace] [--teacher FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pyscatter.engine.geometry import minimum_image
from pyscatter.models import load_model
from pyscatter.models.base import Frame
from pyscatter.surrogate.frames import label, load_frames

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT.parent / "shared" / "models" / "h2cu_mace_stark2023.model"
BINS = (0.0, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 6.0)
"""Shortest H-Cu distance bins, Å."""


def interaction(model, numbers: np.ndarray, cell: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interaction energies (M,) eV and forces on the two H atoms (M, 2, 3) eV/Å of frames (M, N, 3)."""
    h, cu = np.flatnonzero(numbers == 1), np.flatnonzero(numbers != 1)
    parts = []
    for atoms in (np.arange(len(numbers)), cu, h):
        frame = Frame(numbers[atoms], cell, (True, True, False))
        parts.append(label(model, frame, positions[:, atoms]))
    (full, forces), (slab, _), (molecule, _) = parts
    return full - slab - molecule, forces[:, h]


def shortest_h_cu(numbers: np.ndarray, cell: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(M,) shortest H-Cu distance, Å, minimum image in the surface plane."""
    h, cu = np.flatnonzero(numbers == 1), np.flatnonzero(numbers != 1)
    d = torch.as_tensor(positions[:, cu][:, None] - positions[:, h][:, :, None])  # (M, 2, n_cu, 3)
    return minimum_image(d, torch.as_tensor(cell), (True, True, False)).norm(dim=-1).amin(dim=(1, 2)).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="committee working directory (holds frames/)")
    parser.add_argument("--model", default="h2cu-ace")
    parser.add_argument("--teacher", default=str(TEACHER))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "interaction_errors.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, teacher = load_model(args.model), load_model(args.teacher, trust=True)

    by_facet: dict[str, list] = {}
    for frames in load_frames(args.work):
        facet = frames.source[0].split("_")[0]
        ours, our_forces = interaction(model, frames.numbers, frames.cell, frames.positions)
        theirs, their_forces = interaction(teacher, frames.numbers, frames.cell, frames.positions)
        by_facet.setdefault(facet, []).append((shortest_h_cu(frames.numbers, frames.cell, frames.positions),
                                               ours - theirs, our_forces - their_forces))
    rows = []
    print(f"{args.model} - teacher, interaction energy E(slab+H2) - E(slab) - E(H2), frames of {args.work}")
    print(f"{'facet':<7} {'H-Cu (Å)':>10} {'frames':>6} {'dE_int mean ± se (meV)':>24} {'RMS (meV)':>9} {'F(H) RMSE (meV/Å)':>17}")
    for facet, parts in by_facet.items():
        distance, error, force_error = (np.concatenate(x) for x in zip(*parts))
        for lo, hi in zip(BINS[:-1], BINS[1:]):
            m = (distance >= lo) & (distance < hi)
            if not m.any():
                continue
            e = 1e3 * error[m]
            row = {"facet": facet, "h_cu_min": lo, "h_cu_max": hi, "frames": int(m.sum()),
                   "mean_meV": float(e.mean()), "stderr_meV": float(e.std(ddof=1) / np.sqrt(m.sum())) if m.sum() > 1 else None,
                   "rms_meV": float(np.sqrt((e**2).mean())),
                   "h_force_rmse_meV_per_A": float(1e3 * np.sqrt((force_error[m] ** 2).mean()))}
            rows.append(row)
            print(f"{facet:<7} {f'[{lo}, {hi})':>10} {row['frames']:>6} {row['mean_meV']:>+14.1f} ± {row['stderr_meV'] or 0:<7.1f}"
                  f" {row['rms_meV']:>9.1f} {row['h_force_rmse_meV_per_A']:>17.0f}")
    args.out.write_text(json.dumps({"model": args.model, "teacher": args.teacher, "frames": str(args.work), "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
