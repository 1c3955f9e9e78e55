"""Command line: ``pyscatter run``, ``pyscatter ebk``, ``pyscatter model eval``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from pyscatter.conditions import MOLECULE_NAMES, ConditionError, RunSpec
from pyscatter.initial.surface import FACETS
from pyscatter.models import DEFAULT_MODEL


def integer_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (0: non-negative, 1: positive)."""
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {value}")
        return value

    return parse


_nonnegative_int = integer_at_least(0)


class CommandParser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str):
        self.exit(2, f"pyscatter: error: {message}\n")


def add_condition_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that define a :class:`RunSpec` plus how it is executed (shared by run-like commands)."""
    parser.add_argument("--surface", required=True, help=f"Cu facet: {', '.join(FACETS)}")
    parser.add_argument("--T", type=float, required=True, dest="temperature", help="surface temperature, K")
    parser.add_argument("--v", type=_nonnegative_int, required=True, help="vibrational quantum number")
    parser.add_argument("--J", type=_nonnegative_int, required=True, help="rotational quantum number")
    parser.add_argument("--molecule", default="H2", help=f"{', '.join(MOLECULE_NAMES)} (default H2)")
    parser.add_argument("--trajectories", type=int, default=10000, help="trajectories per energy (default 10000)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"{DEFAULT_MODEL} (default: the shipped H2/Cu ACE surrogate), emt (demonstration) or a model file")
    parser.add_argument("--out", default=None, help="run directory (default runs/<condition>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None, help="systems integrated together per process")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="processes on this machine (default: one per available core)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--engine", choices=["native", "nqcd"], default="native",
                        help="integrator: pyscatter's batched velocity Verlet, or NQCDynamics.jl through juliacall"
                             " (pip install -e '.[julia]'; needs --workers 1)")
    parser.add_argument("--dt", type=float, default=0.1, help="time step, fs (default 0.1)")
    parser.add_argument("--max-time", type=float, default=3000.0, help="longest trajectory, fs (default 3000)")
    parser.add_argument("--lattice-constant", type=float, default=None, help="Cu lattice constant, Å (default: the model's at T)")
    parser.add_argument("--snapshots", type=int, default=64, help="thermal slab snapshots to draw from (default 64)")
    add_trust_argument(parser)
    add_dask_arguments(parser)


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-model`` (``args.trust_model``): load pickled model files, which runs code from them."""
    parser.add_argument(
        "--trust-model", action="store_true",
        help="load a pickled (torch.save) model file: this runs code from the file, so only for files you trust "
        "(or record it once with `pyscatter model trust FILE`; TorchScript, .npz and .yace need neither)",
    )


def add_dask_arguments(parser: argparse.ArgumentParser) -> None:
    """Run the trajectories on Dask instead of ``--workers`` local processes."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786")
    where.add_argument("--dask-workers", type=int, default=None, help="start a Dask LocalCluster of N worker processes")


def run_spec(args: argparse.Namespace) -> RunSpec:
    """The :class:`RunSpec` named by :func:`add_condition_arguments`'s arguments."""
    return RunSpec(
        surface=args.surface, temperature=args.temperature, v=args.v, J=args.J, molecule=args.molecule,
        model=args.model, seed=args.seed, dt=args.dt, max_time=args.max_time,
        lattice_constant=args.lattice_constant, n_snapshots=args.snapshots,
    )


# Modules that add command groups: each has ``add_commands(commands, model_commands)``, registering
# subparsers whose ``handler`` default takes the parsed arguments and returns an exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "pyscatter.cli.models",
    "pyscatter.cli.curves",
    "pyscatter.cli.campaign",
    "pyscatter.cli.surrogate",
)


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="pyscatter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    run = sub.add_parser("run", help="sticking probability of one state on one facet")
    add_condition_arguments(run)
    run.add_argument("--energy", type=float, nargs="+", default=[0.5], help="collision energies, eV (default 0.5)")
    run.add_argument("--json", action="store_true", help="print one JSON object per collision energy")
    run.set_defaults(handler=_run)

    ebk = sub.add_parser("ebk", help="EBK-quantised level of the isolated molecule on the model's potential")
    ebk.add_argument("--molecule", default="H2")
    ebk.add_argument("--v", type=_nonnegative_int, required=True)
    ebk.add_argument("--J", type=_nonnegative_int, required=True)
    ebk.add_argument("--model", default=DEFAULT_MODEL)
    ebk.add_argument("--json", action="store_true")
    add_trust_argument(ebk)
    ebk.set_defaults(handler=_ebk)

    model = sub.add_parser("model", help="model utilities")
    model_sub = model.add_subparsers(dest="model_command", required=True, parser_class=CommandParser)
    evaluate = model_sub.add_parser("eval", help="energies and forces of structures, as extended XYZ")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--input", required=True, help="any file ASE reads (all frames)")
    evaluate.add_argument("--output", required=True, help="extended XYZ with energy and forces")
    add_trust_argument(evaluate)
    evaluate.set_defaults(handler=_model_eval)

    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub, model_sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from pyscatter.models.base import ModelError
    from pyscatter.store import StoreError

    try:
        return args.handler(args)
    except (ConditionError, ModelError, StoreError, ValueError, OSError) as err:
        print(f"pyscatter: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyscatter: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _run(args) -> int:
    from pyscatter.workflows.execution import open_executor
    from pyscatter.models import model_notes
    from pyscatter.cli.progress import ProgressBar, thermalisation_bar
    from pyscatter.workflows.run import default_out_dir, run

    spec = run_spec(args)
    for note in model_notes(spec.model, spec.surface):
        print(f"pyscatter: note: {note}", file=sys.stderr)
    out = args.out or str(default_out_dir(spec))
    with open_executor(args.scheduler, args.dask_workers) as executor, ProgressBar() as bar:
        summaries = run(
            spec, args.energy, args.trajectories, out_dir=out, batch_size=args.batch_size,
            workers=args.workers, threads=args.threads, on_progress=bar.trajectories, on_thermalisation=thermalisation_bar(), executor=executor,
            engine=args.engine,
        )
    if args.json:
        for s in summaries:
            print(json.dumps(s))
    else:
        print(f"run directory: {out}")
        print(format_table(summaries))
    return 0


def format_table(summaries: list[dict]) -> str:
    """Probabilities with 95 % Wilson intervals, one row per collision energy."""
    head = (f"{'E (eV)':>7} {'N':>6} {'P_stick':>8} {'95% CI':>17} {'P_scatter':>9} {'P_trapped':>9}"
            f" {'|dE|>10meV':>10} {'wall (s)':>9}")
    rows = [head]
    for s in summaries:
        lo, hi = s["p_stick_ci"]
        rows.append(
            f"{s['collision_energy']:7.3f} {s['n_trajectories']:6d} {s['p_stick']:8.4f} [{lo:7.4f}, {hi:7.4f}]"
            f" {s['p_scatter']:9.4f} {s['p_trapped']:9.4f} {s['n_energy_error_above_10meV']:10d} {s['wall_time_s']:9.1f}"
        )
    return "\n".join(rows)


def _ebk(args) -> int:
    from pyscatter.initial.molecule import (
        MOLECULES,
        diatomic_potential,
        level_summary,
        quantise,
    )
    from pyscatter.models import load_model

    if args.molecule not in MOLECULES:
        raise ConditionError(f"unknown molecule {args.molecule!r}: choose one of {', '.join(MOLECULE_NAMES)}")
    model = load_model(args.model, trust=args.trust_model)
    molecule = MOLECULES[args.molecule]
    level = quantise(diatomic_potential(model, molecule.numbers), molecule, args.v, args.J)
    info = level_summary(level)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>12}: {value}")
    return 0


def _model_eval(args) -> int:
    import numpy as np
    import torch
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    from pyscatter.models import Frame, load_model
    from pyscatter.models.base import check_species

    model = load_model(args.model, trust=args.trust_model)
    structures = read(args.input, index=":")
    for atoms in structures:
        frame = Frame.from_atoms(atoms)
        check_species(model, frame.numbers)
        out = model(frame, torch.as_tensor(atoms.positions[None], dtype=torch.float64))
        atoms.calc = SinglePointCalculator(atoms, energy=float(out.energies[0]), forces=np.asarray(out.forces[0]))
    write(args.output, structures, format="extxyz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
