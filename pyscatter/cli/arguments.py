"""What the commands share: argparse types with one-line errors, the options generated from
:class:`~pyscatter.conditions.RunSpec`, and how a run is executed (workers, Dask, trust, committee)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import sys
import time
import typing

from pyscatter.conditions import (
    MAX_TRAJECTORIES,
    ConditionError,
    RunSpec,
    check_collision_energy,
    field_types,
    flag_of,
    spec_fields,
)
from pyscatter.engine.engines import ENGINES, check_friction


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


nonnegative_int = integer_at_least(0)
positive_int = integer_at_least(1)


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
        return _value_parser(args[0], separators) if args else {int: nonnegative_int, float: _number}.get(kind, str)
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
    parser.add_argument("--batch-size", type=positive_int, default=None, help="systems integrated together per process")
    add_execution_arguments(parser)
    parser.add_argument("--engine", choices=list(ENGINES), default="native",
                        help="integrator: pyscatter's batched velocity Verlet, or NQCDynamics.jl through juliacall"
                             " (pip install -e '.[julia]'; needs --workers 1; runs without free flight)")
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
    parser.add_argument("--workers", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="processes on this machine (default: one per available core)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads per process (default 1)")
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
    where.add_argument("--dask-workers", type=positive_int, default=None,
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
    from pyscatter.workflows.dask import check_executor_options

    options = _executor_options(args)
    try:
        check_executor_options(**options)
    except ValueError as err:  # its message names parameters: name their flags here
        names = re.compile(r"\b(" + "|".join(options) + r")\b")
        raise ValueError(names.sub(lambda name: "--" + name[1].replace("_", "-"), str(err))) from None


def open_executor_of(args: argparse.Namespace):
    """The :func:`~pyscatter.workflows.dask.open_executor` of :func:`add_dask_arguments`'s options;
    prints the dashboard's link on stderr when asked for one."""
    from pyscatter.workflows.dask import open_executor

    executor = open_executor(**_executor_options(args))
    if args.dashboard:
        print(f"pyscatter: Dask dashboard at {executor.cluster.dashboard_link}", file=sys.stderr)
    return executor


def committee_of(args: argparse.Namespace) -> list[str]:
    """The member models of ``--committee`` (expanded; refused before anything runs), or [] without one."""
    from pyscatter.workflows.committee import expand_committee

    return expand_committee(args.committee, args.trust_model) if args.committee else []


def execution_of(args: argparse.Namespace):
    """The :class:`~pyscatter.workflows.settings.Execution` of :func:`add_condition_arguments`'s options, without an
    executor (:func:`open_executor_of` opens it); ``--start-for S`` stops starting trajectories S seconds from now.
    Refuses (one line) an engine that cannot run here, before anything is loaded or said."""
    from pyscatter.workflows.settings import Execution

    start_for = getattr(args, "start_for", None)
    execution = Execution(workers=args.workers, threads=args.threads, batch_size=args.batch_size, engine=args.engine,
                          last_start=None if start_for is None else time.time() + start_for)
    check_friction(ENGINES[args.engine], getattr(args, "friction", "none"))
    ENGINES[args.engine].check()
    return execution


def run_notes(spec: RunSpec, engine: str) -> list[str]:
    """What a run of ``spec`` on ``engine`` must tell its user before it starts: the model's notes
    (:func:`~pyscatter.models.model_notes`), an engine without free flight and a frozen-slab density under a moving
    slab."""
    from pyscatter.models import model_notes

    notes = model_notes(spec.model, spec.surface)
    if spec.density is not None:
        notes.append(f"the density {spec.density} is a frozen slab's: the thermal slab's atoms move, its density does "
                     "not follow them (the default independent-atom density does)")
    if spec.free_flight and not ENGINES[engine].free_flight:
        notes.append(f"the {engine} engine has no free flight: the run integrates the whole system throughout and "
                     "records free_flight false")
    return notes
