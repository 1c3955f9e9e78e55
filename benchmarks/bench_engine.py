"""Trajectory throughput of the batched engine vs the serial ASE loop an ASE user writes today.

Both integrate the same initial conditions (H2(v=1, J=1) on thermal Cu(111) at 925 K, 0.5 eV,
EMT): the batched engine with ``EMTModel`` and continuous batching, the serial reference with
ASE's ``VelocityVerlet`` and ASE's ``EMT`` one trajectory at a time, with the same stopping
rules. Prints a table and writes JSON.

    python benchmarks/bench_engine.py [--trajectories 1024] [--batch-sizes 256 512] [--serial 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet

from pyscatter.conditions import RunSpec
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
from pyscatter.initial.surface import build_slab, lattice_constant
from pyscatter.initial.thermal import thermalise
from pyscatter.models.emt import EMTModel

SPEC = RunSpec(surface="111", temperature=925.0, v=1, J=1, model="emt")
ENERGY = 0.5


class TimedModel:
    """Wraps a model and accumulates the seconds spent inside force calls."""

    def __init__(self, model):
        self.model, self.seconds = model, 0.0
        for attr in ("name", "species", "cutoff", "dtype", "identity"):
            setattr(self, attr, getattr(model, attr))

    def __call__(self, frame, positions, compute_forces=True):
        start = time.perf_counter()
        out = self.model(frame, positions, compute_forces)
        self.seconds += time.perf_counter() - start
        return out


def batched(initial, n_trajectories: int, batch_size: int) -> dict:
    model = TimedModel(EMTModel())
    results, calls = [], []
    start = time.perf_counter()
    run_dynamics(model, initial, range(n_trajectories), lambda r, c: (results.extend(r), calls.append(c)),
                 batch_size=batch_size, dt=SPEC.dt, max_time=SPEC.max_time)
    wall = time.perf_counter() - start
    steps = sum(calls)
    return {
        "engine": f"pyscatter batch {batch_size}",
        "trajectories": n_trajectories,
        "structure_steps": steps,
        "wall_s": wall,
        "trajectories_per_s": n_trajectories / wall,
        "structure_steps_per_s": steps / wall,
        "outside_force_call_share": 1 - model.seconds / wall,
        "mean_steps_per_trajectory": float(np.mean([r.end_time / SPEC.dt for r in results])),
        "p_stick": float(np.mean([r.outcome.label == "dissociated" for r in results])),
    }


def serial_ase(initial, n_trajectories: int) -> dict:
    """ASE VelocityVerlet + ASE EMT, one trajectory at a time, same stopping rules."""
    a, b = initial.molecule
    top = initial.top_layer
    masses = initial.masses[[a, b]]
    steps_total, start = 0, time.perf_counter()
    for index in range(n_trajectories):
        atoms = initial.atoms(index)
        atoms.calc = EMT()
        dyn = VelocityVerlet(atoms, timestep=SPEC.dt * units.fs)
        for step in range(1, SPEC.max_steps + 1):
            dyn.run(1)
            pos = atoms.positions
            vel = atoms.get_velocities()
            d = atoms.get_distance(a, b, mic=True)
            com_z = (masses * pos[[a, b], 2]).sum() / masses.sum()
            com_vz = (masses * vel[[a, b], 2]).sum() / masses.sum()
            if d > SPEC.dissociation_distance or (com_z - pos[top, 2].mean() > SPEC.scatter_height and com_vz > 0):
                break
        steps_total += step + 1  # + the initial force call
    wall = time.perf_counter() - start
    return {
        "engine": "ASE VelocityVerlet + ASE EMT (serial)",
        "trajectories": n_trajectories,
        "structure_steps": steps_total,
        "wall_s": wall,
        "trajectories_per_s": n_trajectories / wall,
        "structure_steps_per_s": steps_total / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=1024)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--serial", type=int, default=3, help="trajectories run by the serial ASE loop")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="benchmarks/results/engine.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = EMTModel()
    slab = build_slab(SPEC.surface, lattice_constant(model, SPEC.temperature))
    snapshots = thermalise(model, slab, SPEC.temperature, n_snapshots=16, seed=0)
    initial = build_initial_conditions(SPEC, ENERGY, slab, snapshots, quantised_molecule(SPEC, model))

    rows = [serial_ase(initial, args.serial)]
    rows += [batched(initial, args.trajectories, b) for b in args.batch_sizes]
    reference = rows[0]
    for row in rows[1:]:
        row["step_throughput_ratio"] = row["structure_steps_per_s"] / reference["structure_steps_per_s"]
        # serial time for the same trajectories: its cost per step times the batched run's steps
        serial_time = row["structure_steps"] / reference["structure_steps_per_s"]
        row["trajectory_throughput_ratio"] = serial_time / row["wall_s"]

    print(f"threads={args.threads}  condition: H2(v=1,J=1)/Cu(111) 925 K, E=0.5 eV, EMT")
    print(f"{'engine':<40} {'traj':>6} {'steps/traj':>10} {'traj/s':>8} {'struct-steps/s':>15} {'ratio':>7} {'outside F':>9}")
    for row in rows:
        steps_per_traj = row.get("mean_steps_per_trajectory", row["structure_steps"] / row["trajectories"])
        print(f"{row['engine']:<40} {row['trajectories']:>6} {steps_per_traj:>10.0f} {row['trajectories_per_s']:>8.2f}"
              f" {row['structure_steps_per_s']:>15.0f} {row.get('step_throughput_ratio', 1.0):>7.1f}"
              f" {row.get('outside_force_call_share', float('nan')):>9.1%}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
