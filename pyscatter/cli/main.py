"""Command line: ``pyscatter run``, ``pyscatter ebk``, ``pyscatter model eval``."""

from __future__ import annotations

import argparse
import dataclasses
import math
import importlib
import json
import os
import signal
import sqlite3
import sys
import time
import typing

import pyscatter
from pyscatter.conditions import (
    DEFAULT_MODEL,
    MAX_TRAJECTORIES,
    MOLECULE_NAMES,
    ConditionError,
    RunSpec,
    check_collision_energy,
    field_types,
    flag_of,
    spec_fields,
)


def integer_at_least(minimum: int, maximum: int | None = None):
    """An argparse type: an integer >= ``minimum`` (0: non-negative, 1: positive) and <= ``maximum`` (if given)."""
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    if maximum is not None:
        kind = f"an integer from {minimum} to {maximum:,}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {kind}, got {value}")
        return value

    return parse


_nonnegative_int = integer_at_least(0)
_positive_int = integer_at_least(1)


class CommandParser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message: str):
        self.exit(2, f"pyscatter: error: {message}\n")


def _number(text: str) -> float:
    """An argparse type: a finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    """An argparse type: a finite float > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def collision_energy(text: str) -> float:
    """An argparse type: a collision energy in eV (finite, > 0; :func:`~pyscatter.conditions.check_collision_energy`)."""
    try:
        return check_collision_energy(float(text))
    except ValueError as err:  # ConditionError included
        raise argparse.ArgumentTypeError(str(err) if isinstance(err, ConditionError)
                                         else f"collision energy must be a number of eV, got {text!r}") from None


def _value_parser(kind, separators: str = ",:"):
    """The argparse type of a field of type ``kind``: int (>= 0), float (finite), str, ``X | None`` as X, and a
    tuple as its items separated by ``,`` (a tuple inside a tuple by ``:``, e.g. v:J pairs ``0:0,1:1``)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is not tuple:
        return _value_parser(args[0], separators) if args else {int: _nonnegative_int, float: _number}.get(kind, str)
    items = [_value_parser(a, separators[1:]) for a in args if a is not Ellipsis]
    fixed = Ellipsis not in args

    def parse(text: str) -> tuple:
        parts = [part for part in text.split(separators[0]) if part.strip()]
        if fixed and len(parts) != len(items):
            raise argparse.ArgumentTypeError(f"expected {len(items)} values separated by {separators[0]!r}, "
                                             f"got {text!r}")
        return tuple(items[min(i, len(items) - 1)](part) for i, part in enumerate(parts))

    return parse


def _value_text(value, separators: str = ",:") -> str:
    """``value`` as :func:`_value_parser` reads it."""
    if isinstance(value, tuple):
        return separators[0].join(_value_text(item, separators[1:]) for item in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_field_arguments(parser: argparse.ArgumentParser, fields: list[dataclasses.Field], types: dict) -> None:
    """One option per dataclass field, generated from its :func:`~pyscatter.conditions.option` metadata (flag,
    help) and its type in ``types`` (field name -> type); read them back with :func:`field_values`."""
    for f in fields:
        kind = types[f.name]
        help_text = f.metadata["help"]
        if kind is bool:
            parser.add_argument(flag_of(f), dest=f.name, action="store_false" if f.default else "store_true",
                                help=help_text)
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else f.default
        if default is not None:
            help_text += f" (default {_value_text(default)})"
        parser.add_argument(flag_of(f), dest=f.name, type=_value_parser(kind), required=required, default=default,
                            help=help_text)


def field_values(args: argparse.Namespace, fields: list[dataclasses.Field]) -> dict:
    """Field name -> value of :func:`add_field_arguments`'s options."""
    return {f.name: getattr(args, f.name) for f in fields}


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`RunSpec` and its :class:`Termination`."""
    add_field_arguments(parser, spec_fields(), field_types())


def run_spec(args: argparse.Namespace) -> RunSpec:
    """The :class:`RunSpec` named by :func:`add_spec_arguments`'s options."""
    return RunSpec.from_dict(field_values(args, spec_fields()))


def add_condition_arguments(parser: argparse.ArgumentParser) -> None:
    """The :class:`RunSpec` options plus how the run is executed (shared by run-like commands)."""
    add_spec_arguments(parser)
    parser.add_argument("--trajectories", type=integer_at_least(1, MAX_TRAJECTORIES), default=10000,
                        help=f"trajectories per energy, at most {MAX_TRAJECTORIES:,} (default 10000)")
    parser.add_argument("--out", default=None, help="run directory (default runs/<condition>)")
    parser.add_argument("--snapshots-from", default=None, metavar="DIR",
                        help="start from another run directory's thermal slab snapshots (and lattice constant), e.g. "
                             "another model's, to compare two models on identical initial conditions")
    parser.add_argument("--batch-size", type=_positive_int, default=None, help="systems integrated together per process")
    add_execution_arguments(parser)
    parser.add_argument("--engine", choices=["native", "nqcd"], default="native",
                        help="integrator: pyscatter's batched velocity Verlet, or NQCDynamics.jl through juliacall"
                             " (pip install -e '.[julia]'; needs --workers 1)")
    parser.add_argument("--committee", nargs="+", default=[], metavar="M",
                        help="model committee (names or files; an ACE committee file stands for its members, 8 by "
                             "default) run on the same trajectories as --model, which stays the headline: adds each "
                             "member's P_stick, their mean and sd (the model error) beside the 95%% Wilson interval. "
                             "Costs one run per member (they share only the initial conditions)")
    parser.add_argument("--committee-trajectories", type=integer_at_least(1, MAX_TRAJECTORIES), default=None,
                        metavar="N", help="members run only the first N trajectories per energy; the model sd then "
                                          "comes from their paired differences to --model on those (default: all)")


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how the trajectories are computed: local processes and their threads, trust in the model file,
    or Dask (:func:`add_dask_arguments`)."""
    parser.add_argument("--workers", type=_positive_int, default=len(os.sched_getaffinity(0)),
                        help="processes on this machine (default: one per available core)")
    parser.add_argument("--threads", type=_positive_int, default=1, help="torch threads per process (default 1)")
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
    """Run the trajectories on Dask instead of ``--workers`` local processes (see :func:`open_executor_of`)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None,
                       help="address of a running Dask scheduler, e.g. tcp://host:8786 or tls://host:8786")
    where.add_argument("--dask-workers", type=_positive_int, default=None,
                       help="start a Dask cluster of N worker processes here, listening on 127.0.0.1 only")
    parser.add_argument("--dashboard", action="store_true",
                        help="with --dask-workers: serve Dask's dashboard on 127.0.0.1 (link on stderr)")
    parser.add_argument("--connect-timeout", type=positive_number, default=10.0, metavar="S",
                        help="give up reaching the Dask scheduler after S seconds (default 10)")
    parser.add_argument("--tls-ca-file", default=None, metavar="PEM", help="CA certificate of a tls:// scheduler")
    parser.add_argument("--tls-cert", default=None, metavar="PEM", help="client certificate for a tls:// scheduler")
    parser.add_argument("--tls-key", default=None, metavar="PEM",
                        help="key of --tls-cert (if not appended to it)")


def _executor_options(args: argparse.Namespace) -> dict:
    return dict(scheduler=args.scheduler, dask_workers=args.dask_workers, dashboard=args.dashboard,
                connect_timeout=args.connect_timeout, tls_ca_file=args.tls_ca_file, tls_cert=args.tls_cert,
                tls_key=args.tls_key)


def check_dask_arguments(args: argparse.Namespace) -> None:
    """Refuse :func:`add_dask_arguments`'s options that cannot work (one line), before anything starts."""
    from pyscatter.workflows.execution import check_executor_options

    check_executor_options(**_executor_options(args))


def open_executor_of(args: argparse.Namespace):
    """The :func:`~pyscatter.workflows.execution.open_executor` of :func:`add_dask_arguments`'s options;
    prints the dashboard's link on stderr when asked for one."""
    from pyscatter.workflows.execution import open_executor

    executor = open_executor(**_executor_options(args))
    if args.dashboard:
        print(f"pyscatter: Dask dashboard at {executor.cluster.dashboard_link}", file=sys.stderr)
    return executor


# Modules that add command groups: each has ``add_commands(commands, model_commands)``, registering
# subparsers whose ``handler`` default takes the parsed arguments and returns an exit code.
COMMAND_MODULES: tuple[str, ...] = (
    "pyscatter.cli.models",
    "pyscatter.cli.curves",
    "pyscatter.cli.campaign",
    "pyscatter.cli.surrogate",
    "pyscatter.cli.status",
    "pyscatter.cli.data",
)


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


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt


def error_line(err: BaseException) -> str:
    """``err`` as the one line ``pyscatter: error: ...`` (whitespace runs, newlines included, become one space)."""
    text = " ".join(str(err).split())
    if isinstance(err, (MemoryError, OverflowError, sqlite3.Error)) or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return f"pyscatter: error: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); the exit code: 0 done, 2 refused (one line
    on stderr, nothing written), 130 interrupted."""
    args = _parser().parse_args(argv)
    from pyscatter.models.base import ModelError
    from pyscatter.store import StoreError

    refused = (ConditionError, ModelError, StoreError, ValueError, OSError, ImportError, sqlite3.Error,
               OverflowError, MemoryError)
    previous = signal.signal(signal.SIGTERM, _terminate)  # SIGTERM stops a run like Ctrl-C: finished work is kept
    try:
        return args.handler(args)
    except refused as err:
        print(error_line(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyscatter: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args) -> int:
    spec = run_spec(args)
    check_dask_arguments(args)
    from pyscatter.models import load_model, model_notes
    from pyscatter.cli.progress import ProgressBar, thermalisation_bar
    from pyscatter.workflows.run import default_out_dir, run

    last_start = None if args.start_for is None else time.time() + args.start_for
    model = load_model(spec.model, trust=args.trust_model, device=args.device)  # refused before a Dask cluster starts
    for note in model_notes(spec.model, spec.surface):
        print(f"pyscatter: note: {note}", file=sys.stderr)
    out = args.out or str(default_out_dir(spec))
    members = committee_of(args)
    with open_executor_of(args) as executor, ProgressBar() as bar:
        bar.expect_members(members, args.energy, args.trajectories, args.committee_trajectories)
        execution = dict(batch_size=args.batch_size, workers=args.workers, threads=args.threads, executor=executor,
                         engine=args.engine, trust_model=args.trust_model)
        summaries = run(spec, args.energy, args.trajectories, out_dir=out, on_progress=bar.trajectories,
                        on_thermalisation=thermalisation_bar(), model=model, device=args.device, last_start=last_start,
                        snapshots_from=args.snapshots_from, **execution)
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


def committee_of(args: argparse.Namespace) -> list[str]:
    """The member models of ``--committee`` (expanded; refused before anything runs), or [] without one."""
    from pyscatter.workflows.committee import expand_committee

    return expand_committee(args.committee) if args.committee else []


def _with_committee(spec: RunSpec, summaries: list[dict], args, out: str, bar, execution: dict) -> list[dict]:
    """Run ``--committee`` on the main run's trajectories; ``summaries`` with each energy's committee estimate."""
    from pyscatter.analysis.committee import committee_estimate
    from pyscatter.store import RunReader
    from pyscatter.workflows.committee import run_committee

    n = args.trajectories
    run_committee(spec, args.committee, {s["collision_energy"]: n for s in summaries}, out, args.committee_trajectories,
                  on_progress=bar.member, **execution)
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


def format_table(rows: list[dict]) -> str:
    """One line per collision energy of summary dicts (:func:`pyscatter.workflows.run.summary`'s keys): trajectories,
    their outcomes, P_stick with its 95 % Wilson interval; then, where the rows carry them, the trajectories whose
    energy strayed over 10 meV and the wall time (a run's), and a committee's shared trajectories, mean P_stick and
    model sd."""
    from pyscatter.analysis.committee import COMMITTEE_HEADER, committee_columns

    p = lambda x: f"{x:8.4f}" if x is not None and math.isfinite(x) else f"{'-':>8}"  # noqa: E731
    cost = any("wall_time_s" in r for r in rows)
    committee = any("p_stick_model_sd" in r for r in rows)
    lines = [f"{'E (eV)':>7} {'N':>6} {'diss':>6} {'scat':>6} {'trap':>6} {'fail':>6} {'P_stick':>8} {'95% CI':>17}"
             + (f" {'|dE|>10meV':>10} {'wall (s)':>9}" if cost else "") + (f" {COMMITTEE_HEADER}" if committee else "")]
    for r in rows:
        low, high = r["p_stick_ci"]
        lines.append(f"{r['collision_energy']:7.3f} {r['n_trajectories']:6d} {r['n_dissociated']:6d}"
                     f" {r['n_scattered']:6d} {r['n_trapped']:6d} {r['n_failed']:6d} {p(r['p_stick'])}"
                     f" [{low:7.4f}, {high:7.4f}]"
                     + (f" {r['n_energy_error_above_10meV']:10d} {r['wall_time_s']:9.1f}" if cost else "")
                     + (" " + committee_columns(r["committee_trajectories"], r["p_stick_committee_mean"],
                                                r["p_stick_model_sd"]) if committee else ""))
    return "\n".join(lines)


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
