"""EMTModel against ASE's EMT: ms per structure (energy + forces) on 56-atom Cu(111) + H2 slabs.

Atoms move slightly between calls (MD-like), so the skin neighbour lists are reused; the cost
of the first call (every list searched) is reported separately. Prints a table, writes JSON.

    python benchmarks/bench_emt.py [--out benchmarks/results/emt.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import ase
import numpy as np
import torch
from ase import Atoms
from ase.build import fcc111
from ase.calculators.emt import EMT

from pyscatter.models.base import Frame
from pyscatter.models.emt import EMTModel

BATCH_SIZES = (1, 16, 64, 256, 512)
THREADS = (1, 2)
STEP = 0.002  # Å, random displacement per call and coordinate
SECONDS_PER_POINT = 1.5


def cu111_h2(rng: np.random.Generator) -> tuple[Frame, np.ndarray]:
    """Frame and positions (N, 3) Å of a 3x3x6 Cu(111) slab with H2 1.5 Å above it."""
    slab = fcc111("Cu", (3, 3, 6), a=3.6, vacuum=10.0)
    slab.pbc = (True, True, False)
    top = slab.positions[:, 2].max()
    slab += Atoms("H2", positions=[[2.0, 2.0, top + 1.5], [2.74, 2.0, top + 1.5]])
    positions = slab.positions + 0.05 * rng.standard_normal(slab.positions.shape)
    return Frame.from_atoms(slab), positions


def time_ase(frame: Frame, start: np.ndarray, rng: np.random.Generator) -> float:
    """ms per structure of ASE's EMT get_potential_energy + get_forces on a moving structure."""
    atoms = frame.atoms(start)
    atoms.calc = EMT()
    atoms.get_forces()
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < SECONDS_PER_POINT:
        atoms.positions = atoms.positions + STEP * rng.standard_normal(start.shape)
        atoms.get_potential_energy()
        atoms.get_forces()
        calls += 1
    return (time.perf_counter() - t0) / calls * 1e3


def time_model(frame: Frame, start: np.ndarray, batch: int, rng: np.random.Generator) -> tuple[float, float]:
    """(ms per structure per call with reused lists, ms per structure of the first call)."""
    model = EMTModel()
    positions = torch.from_numpy(start + 0.05 * rng.standard_normal((batch, *start.shape)))
    t0 = time.perf_counter()
    model(frame, positions)
    first = (time.perf_counter() - t0) * 1e3 / batch
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < SECONDS_PER_POINT or calls < 3:
        positions = positions + STEP * torch.randn_like(positions)
        model(frame, positions)
        calls += 1
    return (time.perf_counter() - t0) / calls * 1e3 / batch, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/emt.json", help="JSON results path")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frame, start = cu111_h2(rng)
    rows = []
    print(f"{'threads':>7} {'batch':>6} {'ase ms/str':>11} {'emt ms/str':>11} {'ratio':>7} {'1st call ms/str':>16}")
    for threads in THREADS:
        torch.set_num_threads(threads)
        ase_ms = time_ase(frame, start, rng)
        for batch in BATCH_SIZES:
            model_ms, first_ms = time_model(frame, start, batch, rng)
            rows.append(
                {
                    "threads": threads,
                    "batch": batch,
                    "ase_ms_per_structure": ase_ms,
                    "emt_ms_per_structure": model_ms,
                    "speedup": ase_ms / model_ms,
                    "first_call_ms_per_structure": first_ms,
                }
            )
            print(
                f"{threads:>7} {batch:>6} {ase_ms:>11.3f} {model_ms:>11.4f} {ase_ms / model_ms:>7.1f} {first_ms:>16.3f}"
            )
    result = {
        "benchmark": "EMTModel vs ase.calculators.emt.EMT, energy+forces, 56-atom Cu(111)+H2 slab, moving atoms",
        "n_atoms": frame.n_atoms,
        "step_angstrom": STEP,
        "torch": torch.__version__,
        "ase": ase.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
