"""Command line: ``pyscatter run``, ``pyscatter ebk``, ``pyscatter model eval``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sqlite3
import sys
import time

import pyscatter
from pyscatter.cli import campaign, curves, data, models, status, surrogate
from pyscatter.cli.arguments import (CommandParser, add_condition_arguments, add_trust_argument, check_dask_arguments,
                                     collision_energy, committee_of, execution_of, nonnegative_int, open_executor_of,
                                     positive_number, run_notes, run_spec)
from pyscatter.cli.tables import format_table
from pyscatter.conditions import DEFAULT_MODEL, MOLECULE_NAMES, ConditionError, RunSpec


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="pyscatter", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pyscatter {pyscatter.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    run = sub.add_parser("run", help="sticking probability of one state on one facet")
    add_condition_arguments(run)
    run.add_argument("--energy", type=collision_energy, nargs="+", default=[0.5], help="collision energies, eV (default 0.5)")
    run.add_argument("--json", action="store_true", help="print one JSON object per collision energy")
    run.add_argument("--device", default="cpu",
                     help="where a MACE (torch) model runs, e.g. cuda: a batch is one forward pass there, worker "
                          "processes share the GPU; use a large --batch-size (default cpu)")
    run.add_argument("--start-for", type=positive_number, default=None, metavar="S",
                     help="start trajectories for S seconds only, then finish those started and stop; the same "
                          "command resumes (e.g. inside a batch job's time limit)")
    run.set_defaults(handler=_run)

    ebk = sub.add_parser("ebk", help="EBK-quantised level of the isolated molecule on the model's potential")
    ebk.add_argument("--molecule", default="H2")
    ebk.add_argument("--v", type=nonnegative_int, required=True)
    ebk.add_argument("--J", type=nonnegative_int, required=True)
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

    for commands in (models, curves, campaign, surrogate, status, data):  # each registers its group of commands
        commands.add_commands(sub, model_sub)
    return parser


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def error_line(err: BaseException) -> str:
    """``err`` as the one line ``pyscatter: error: ...`` (whitespace runs, newlines included, become one space)."""
    text = " ".join(str(err).split())
    if isinstance(err, (MemoryError, OverflowError, sqlite3.Error)) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return f"pyscatter: error: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit code: 0 done, 1 stopped because
    worker processes failed or kept dying (one line on stderr; finished trajectories are kept), 2 refused
    (one line on stderr, nothing written), 130 interrupted."""
    args = _parser().parse_args(argv)
    from pyscatter.models.base import ModelError
    from pyscatter.store import StoreError
    from pyscatter.workflows.execution import WorkerError

    refused = (ConditionError, ModelError, StoreError, ValueError, OSError, ImportError, sqlite3.Error,
               OverflowError, MemoryError)
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops a run like Ctrl-C: finished work is kept
    try:
        return args.handler(args)
    except refused as err:
        print(error_line(err), file=sys.stderr)
        return 2
    except WorkerError as err:
        print(error_line(err), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pyscatter: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    spec = run_spec(args)
    check_dask_arguments(args)
    execution = execution_of(args)
    from pyscatter.models import ModelRef
    from pyscatter.workflows.progress import ProgressBar, thermalisation_bar
    from pyscatter.workflows.run import default_out_dir, run

    model, _ = ModelRef(spec.model, trust=args.trust_model, device=args.device).load()  # refused before Dask starts
    for note in run_notes(spec, args.engine):
        print(f"pyscatter: note: {note}", file=sys.stderr)
    out = args.out or str(default_out_dir(spec))
    members = committee_of(args)
    with open_executor_of(args) as executor, ProgressBar() as bar:
        bar.expect_members(members, args.energy, args.trajectories, args.committee_trajectories)
        execution = dataclasses.replace(execution, executor=executor)
        summaries = run(spec, args.energy, args.trajectories, out, model=model, on_progress=bar.trajectories,
                        on_thermalisation=thermalisation_bar(), execution=execution,
                        on_note=lambda text: print(f"pyscatter: note: {text}", file=sys.stderr),
                        snapshots_from=args.snapshots_from)
        if members:
            summaries = _with_committee(spec, summaries, args, out, bar, execution)
    warn_failures(summaries)
    short = [s for s in summaries if args.start_for is not None and s["n_trajectories"] < args.trajectories]
    if short:
        print(f"pyscatter: note: --start-for ended the run short of {args.trajectories} trajectories at "
              f"{', '.join(format(s['collision_energy'], 'g') for s in short)} eV; the same command resumes it",
              file=sys.stderr)
    if args.json:
        for s in summaries:
            print(json.dumps(s))
    else:
        print(f"run directory: {out}")
        print(format_table(summaries))
    return 0


def _with_committee(spec: RunSpec, summaries: list[dict], args, out: str, bar, execution) -> list[dict]:
    """Run ``--committee`` on the main run's trajectories; ``summaries`` with each energy's committee estimate."""
    from pyscatter.analysis.committee import committee_estimate
    from pyscatter.store import RunReader
    from pyscatter.workflows.committee import run_committee

    n = args.trajectories
    run_committee(spec, args.committee, {s["collision_energy"]: n for s in summaries}, out, args.committee_trajectories,
                  args.trust_model, bar.member, execution=execution)
    with RunReader(out) as store:
        return [{**s, **committee_estimate(store, s["collision_energy"], n, args.committee_trajectories).as_dict()}
                for s in summaries]


FAILED_WARNING = 0.001
"""Fraction of failed trajectories above which a run warns on stderr."""


def warn_failures(summaries: list[dict]) -> None:
    """One stderr line per collision energy whose failed fraction exceeds :data:`FAILED_WARNING`."""
    for s in summaries:
        if s["n_failed"] > FAILED_WARNING * s["n_trajectories"]:
            print(f"pyscatter: warning: {s['n_failed']} of {s['n_trajectories']} trajectories at "
                  f"{s['collision_energy']:g} eV failed (non-finite or energy error above --max-energy-error); "
                  "P_stick is over the others", file=sys.stderr)


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
