"""The time step, measured: P_stick and the distribution of total-energy errors at several dt for one condition
(default the README's: H2(v=1, J=1) on Cu(111) at 925 K, 0.5 eV, ``h2cu-ace``), from the same initial conditions
(same seed, the slab snapshots of the 0.1 fs run), each dt against 0.1 fs trajectory by trajectory (exact
McNemar test on the discordant pairs, :mod:`pyscatter.analysis.validation`). Prints a table and writes JSON.

    python benchmarks/time_step_study.py [--trajectories 1000] [--dt 0.05 0.1 0.2] [--workers 1]
        [--out runs/time_step] [--json benchmarks/results/time_step.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pyscatter.analysis.stored import open_run
from pyscatter.analysis.validation import compare, outcomes
from pyscatter.conditions import RunSpec
from pyscatter.workflows.run import run

REFERENCE_DT = 0.1  # fs, the paper's protocol and the default
QUANTILES = (0.5, 0.9, 0.99, 1.0)


def energy_errors(directory: Path, energy: float) -> np.ndarray:
    """max_t |E_total(t) - E_total(0)| (eV) of every finished trajectory."""
    with open_run(directory) as store:
        return np.array([r.max_energy_error for r in store.trajectories(store.condition_id(energy))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=1000)
    parser.add_argument("--dt", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--energy", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/time_step"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/time_step.json"))
    args = parser.parse_args()
    spec = dict(surface="111", temperature=925.0, v=1, J=1)
    directory = lambda dt: args.out / f"dt{dt:g}"  # noqa: E731
    for dt in sorted(args.dt, key=lambda dt: dt != REFERENCE_DT):  # the reference first: its snapshots serve all
        snapshots = None if dt == REFERENCE_DT else directory(REFERENCE_DT) / "thermal_snapshots.npz"
        run(RunSpec(**spec, dt=dt), [args.energy], args.trajectories, out_dir=directory(dt), workers=args.workers,
            snapshots_from=snapshots)
    reference = outcomes(directory(REFERENCE_DT))[args.energy]
    rows = []
    for dt in args.dt:
        errors = energy_errors(directory(dt), args.energy)
        row = {"dt_fs": dt, **compare(outcomes(directory(dt))[args.energy], reference, paired=True),
               "energy_error_quantiles_eV": dict(zip(map(str, QUANTILES), np.quantile(errors, QUANTILES).tolist()))}
        rows.append(row)
        q = row["energy_error_quantiles_eV"]
        print(f"dt {dt:g} fs: P_stick {row['p_model']:.3f} (n {row['n_model']}), vs {REFERENCE_DT:g} fs discordant "
              f"{row['discordant']}, McNemar p {row['mcnemar_p']:.2f}; max |dE| median {q['0.5']:.1e}, "
              f"90% {q['0.9']:.1e}, 99% {q['0.99']:.1e}, max {q['1.0']:.1e} eV")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"condition": {**spec, "energy": args.energy}, "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
