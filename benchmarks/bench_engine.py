"""Trajectory throughput of the batched engine, its overhead outside the force call, and the serial ASE loop.

The same initial conditions (H2(v=1, J=1) on thermal Cu(111) at 925 K, 0.5 eV) run through the
batched engine (continuous batching, compaction, with and without free flight) for each model at its
batch sizes, and, for EMT, through the serial loop an ASE user writes today (ASE's ``VelocityVerlet``
and ``EMT``, one trajectory at a time, same stopping rules). "outside F" is the share of the wall time
spent outside the model's force calls: the engine's own overhead; "2-atom F" the share in the free
molecule's calls (free flight); "ms/struct" the force-call time per slab+molecule structure. Prints a table and writes JSON.

    python benchmarks/bench_engine.py [--models emt h2cu-ace] [--trajectories 256] [--serial 3]
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
from pyscatter.models import load_model

SPEC = RunSpec(surface="111", temperature=925.0, v=1, J=1, model="emt")
ENERGY = 0.5


class TimedModel:
    """Wraps a model and accumulates the seconds spent inside force calls (and its neighbour-list ``select``),
    and apart from them those of the free molecule's 2-atom calls (free flight)."""

    def __init__(self, model):
        self.model, self.seconds, self.structures, self.molecule_seconds = model, 0.0, 0, 0.0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def select(self, frame, keep):
        start = time.perf_counter()
        self.model.select(frame, keep)
        self.seconds += time.perf_counter() - start

    def __call__(self, frame, positions, compute_forces=True):
        start = time.perf_counter()
        out = self.model(frame, positions, compute_forces)
        seconds = time.perf_counter() - start
        if len(frame.numbers) > 2:
            self.seconds += seconds
            self.structures += positions.shape[0]
        else:
            self.molecule_seconds += seconds
        return out


def batched(name: str, initial, n_trajectories: int, batch_size: int, free_flight: bool) -> dict:
    model = TimedModel(load_model(name))
    results, calls = [], []
    start = time.perf_counter()
    run_dynamics(model, initial, range(n_trajectories), lambda r, c: (results.extend(r), calls.append(c)),
                 batch_size, SPEC.dt, SPEC.termination, free_flight)
    wall = time.perf_counter() - start
    steps = sum(calls)
    assert steps == model.structures  # force_calls counts exactly the slab+molecule structures evaluated
    return {
        "engine": f"pyscatter {name} batch {batch_size}{' free flight' if free_flight else ''}",
        "model": name,
        "batch_size": batch_size,
        "free_flight": free_flight,
        "trajectories": n_trajectories,
        "structure_steps": steps,
        "clock_steps": sum(round(r.end_time / SPEC.dt) + 1 for r in results),
        "wall_s": wall,
        "trajectories_per_s": n_trajectories / wall,
        "structure_steps_per_s": steps / wall,
        "outside_force_call_share": 1 - (model.seconds + model.molecule_seconds) / wall,
        "free_molecule_call_share": model.molecule_seconds / wall,
        "ms_per_structure_in_force_calls": 1e3 * model.seconds / steps,
        "mean_steps_per_trajectory": steps / n_trajectories,
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
            if d > SPEC.termination.dissociation_distance or (
                    com_z - pos[top, 2].mean() > SPEC.termination.scatter_height and com_vz > 0):
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
    parser.add_argument("--models", nargs="+", default=["emt", "h2cu-ace"])
    parser.add_argument("--trajectories", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: each model's own")
    parser.add_argument("--serial", type=int, default=3, help="trajectories run by the serial ASE loop (EMT)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/engine.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.models:
        model = load_model(name)
        slab = build_slab(SPEC.surface, lattice_constant(model, SPEC.temperature))
        snapshots = thermalise(model, slab, SPEC.temperature, n_snapshots=16, seed=0)
        initial = build_initial_conditions(SPEC, ENERGY, slab, snapshots, quantised_molecule(SPEC, model))
        if name == "emt" and args.serial:
            rows.append(serial_ase(initial, args.serial))
        for batch_size in args.batch_sizes or [model.default_batch_size]:
            for free_flight in (False, True):
                rows.append(batched(name, initial, args.trajectories, batch_size, free_flight))
    serial = next((r for r in rows if "serial" in r["engine"]), None)
    print(f"threads={args.threads}  condition: H2(v=1,J=1)/Cu(111) 925 K, E={ENERGY} eV")
    print(f"{'engine':<44} {'traj':>5} {'F calls/traj':>12} {'traj/s':>7} {'struct-steps/s':>14} {'vs ASE':>7} {'outside F':>9} {'2-atom F':>8} {'ms/struct':>9}")
    for row in rows:
        if serial is not None and row is not serial and row.get("model") == "emt":
            row["step_throughput_ratio"] = row["structure_steps_per_s"] / serial["structure_steps_per_s"]
        print(f"{row['engine']:<44} {row['trajectories']:>5} {row['structure_steps'] / row['trajectories']:>12.0f}"
              f" {row['trajectories_per_s']:>7.2f} {row['structure_steps_per_s']:>14.0f}"
              f" {row.get('step_throughput_ratio', float('nan')):>7.1f} {row.get('outside_force_call_share', float('nan')):>9.1%}"
              f" {row.get('free_molecule_call_share', float('nan')):>8.1%} {row.get('ms_per_structure_in_force_calls', float('nan')):>9.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
