"""The most that exact free flight can save: on the same trajectories, integrated once as whole systems and once
with free flight, the fraction of whole-system structure force calls made while no H atom was within the
model's cutoff of any slab atom (minimum image), against the calls free flight saved, and how many of its own
calls free flight still makes out of range (what a tighter exit could save).

Trajectories 0..N-1 of a run directory (its spec, snapshots and model; batch 16, one process) are integrated
again both ways, through the engine's observer hook:

    python benchmarks/free_flight_ceiling.py runs/free_flight/readme_ff --trajectories 96 [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from pyscatter.analysis.stored import open_run
from pyscatter.engine.runner import run_dynamics
from pyscatter.engine.geometry import minimum_image
from pyscatter.initial.thermal import ThermalSnapshots
from pyscatter.models import ModelRef
from pyscatter.workflows.execution import Job, build
from pyscatter.workflows.run import SNAPSHOT_FILE


def integrate(directory: Path, n: int, free_flight: bool, batch_size: int = 16) -> dict:
    """Structure force calls, how many of them were out of range, and the outcomes of trajectories 0..n-1."""
    with open_run(directory) as store:
        spec, (energy, *_) = store.spec, store.collision_energies()
    spec = dataclasses.replace(spec, free_flight=free_flight)
    snapshots = ThermalSnapshots.load(directory / SNAPSHOT_FILE)
    reference, _ = ModelRef(spec.model).load()
    job = Job(spec, energy, snapshots.lattice_constant, str((directory / SNAPSHOT_FILE).absolute()), reference,
              batch_size=batch_size)
    model, initial = build(job)
    cell = torch.as_tensor(np.asarray(initial.frame.cell), dtype=torch.float64)
    mol = list(initial.molecule)
    slab = [i for i in range(initial.frame.n_atoms) if i not in mol]
    counts = {"out_of_range": 0}

    def observer(index, steps, positions, velocities, energy, forces, free) -> None:
        if free:
            return
        x = torch.as_tensor(positions)
        d = minimum_image(x[slab][:, None] - x[mol][None], cell, initial.frame.pbc).norm(dim=-1)
        counts["out_of_range"] += int(bool(d.min() > model.cutoff))

    results, calls = [], [0]

    def finished(batch, force_calls):
        results.extend(batch)
        calls[0] += force_calls

    run_dynamics(model, initial, range(n), finished, batch_size, spec.dt, spec.termination, free_flight, observer)
    outcomes = {r.index: r.outcome.name.lower() for r in results}
    return {**counts, "force_calls": calls[0], "outcomes": [outcomes[i] for i in range(n)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run directory (one collision energy)")
    parser.add_argument("--trajectories", type=int, default=96)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    whole = integrate(args.run, args.trajectories, free_flight=False)
    free = integrate(args.run, args.trajectories, free_flight=True)
    whole_calls = whole["force_calls"]
    row = {"run": str(args.run), "n": args.trajectories, "whole_system_calls": whole_calls,
           "out_of_range_calls": whole["out_of_range"], "ceiling": whole["out_of_range"] / whole_calls,
           "free_flight_calls": free["force_calls"], "fewer_calls": 1 - free["force_calls"] / whole_calls,
           "free_flight_out_of_range_calls": free["out_of_range"],
           "dissociated_whole": whole["outcomes"].count("dissociated"),
           "dissociated_free": free["outcomes"].count("dissociated")}
    row["share_of_ceiling"] = row["fewer_calls"] / row["ceiling"]
    print(f"{'N':>5} {'whole calls':>12} {'out of range':>13} {'ceiling':>8} {'free calls':>11} {'still out':>10} "
          f"{'fewer':>7} {'of ceiling':>10} {'diss. whole/free':>17}")
    print(f"{row['n']:5d} {whole_calls:12d} {row['out_of_range_calls']:13d} {row['ceiling']:8.1%} "
          f"{row['free_flight_calls']:11d} {free['out_of_range']:10d} {row['fewer_calls']:7.1%} "
          f"{row['share_of_ceiling']:10.1%} {row['dissociated_whole']:>8d}/{row['dissociated_free']:<8d}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
