"""``pyscatter surrogate validate``: a model against its teacher on the observable, paired and unpaired, with a verdict
per condition (:mod:`pyscatter.workflows.validate`, statistics in :mod:`pyscatter.analysis.validation`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pyscatter.cli.arguments import (
    add_field_arguments,
    add_trust_argument,
    field_values,
    collision_energy,
    integer_at_least,
    positive_number,
)
from pyscatter.conditions import (
    DEFAULT_MODEL,
    FACETS,
    MAX_TRAJECTORIES,
    VALIDATION_TEMPERATURE,
    field_types,
    spec_fields,
)

STAGES = ("reference", "model", "report", "merge")
DEFAULT_STAGES = ("reference", "model", "report")
CONDITION_FIELDS = ("surface", "temperature", "v", "J", "model")
"""RunSpec fields that the command sets from its own options (facets, states, --T, --teacher/--model)."""


def run_settings() -> list:
    """The :class:`~pyscatter.conditions.RunSpec` and :class:`~pyscatter.conditions.Termination` fields the command
    takes as options, the same for both models (seed, dt, snapshots, max-time, ...)."""
    return [f for f in spec_fields() if f.name not in CONDITION_FIELDS]


def _state(text: str) -> tuple[int, int]:
    """``"1:1"`` -> (1, 1)."""
    try:
        v, J = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a state is v:J, e.g. 1:1, got {text!r}") from None
    if v < 0 or J < 0:
        raise argparse.ArgumentTypeError(f"v and J must be >= 0, got {text!r}")
    return v, J


def _stage(text: str) -> str:
    if text not in STAGES:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(STAGES)}, got {text!r}")
    return text


def _fraction(text: str) -> float:
    value = positive_number(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def add_validate_command(surrogate_commands) -> None:
    """Register ``validate`` on the ``surrogate`` subparsers."""
    p = surrogate_commands.add_parser(
        "validate", help="a model against its teacher on sticking probabilities: paired and unpaired runs, exact "
        "tests, erf fits, a verdict per condition (resumable)",
        description="Stages (default reference model report; each resumes): reference: the teacher's runs, in rounds "
        "over all energies; model: a paired partner of each teacher trajectory (same thermal snapshots, seed, "
        "initial conditions) and unpaired runs on the model's own snapshots; report: per energy P_stick of both, "
        "Newcombe 95 % interval of the difference, exact McNemar (pairs) and Fisher (unpaired) tests, erf fits with "
        "ΔE0 from resampling the pairs, OUT/validation.{json,md,png} and a verdict line per condition; merge: add "
        "copies of OUT's run directories resumed elsewhere (--merge-from). Exit status 0 when every reported "
        "condition passes, 1 when one fails or is undecided.")
    p.add_argument("stages", nargs="*", type=_stage, metavar="STAGE",
                   help=f"{', '.join(STAGES)} (default: {' '.join(DEFAULT_STAGES)})")
    p.add_argument("--teacher", help="the teacher (reference) model, a name or file; needed by the reference stage")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"the model to validate (default {DEFAULT_MODEL})")
    p.add_argument("--out", type=Path, required=True, help="folder of the run directories and the report")
    p.add_argument("--facets", nargs="+", choices=FACETS, default=list(FACETS), help="default: all four")
    p.add_argument("--states", nargs="+", type=_state, default=[(1, 1)], metavar="V:J", help="default 1:1")
    p.add_argument("--T", dest="temperature", type=positive_number, default=VALIDATION_TEMPERATURE,
                   help=f"surface temperature, K (default {VALIDATION_TEMPERATURE:g})")
    p.add_argument("--energies", type=collision_energy, nargs="+",
                   help=f"collision energies, eV, of every condition (default: each condition's preset at "
                        f"{VALIDATION_TEMPERATURE:g} K; needed for other conditions and temperatures)")
    p.add_argument("--reference-trajectories", type=integer_at_least(1, MAX_TRAJECTORIES), default=150,
                   help="teacher trajectories per energy, each with a paired partner (default 150)")
    p.add_argument("--model-trajectories", type=integer_at_least(1, MAX_TRAJECTORIES), default=1000,
                   help="unpaired model trajectories per energy (default 1000)")
    p.add_argument("--pairs-only", action="store_true", help="no unpaired runs; the verdict rests on the pairs")
    p.add_argument("--alpha", type=_fraction, default=0.01,
                   help="significance level of every test: paired McNemar p per energy and pooled, unpaired Fisher "
                        "p per energy (default 0.01)")
    p.add_argument("--max-delta-e0", type=positive_number, default=0.020, metavar="EV",
                   help="largest |E0(model) - E0(teacher)| of the erf fits, eV, paired and unpaired (default 0.020)")
    p.add_argument("--draws", type=integer_at_least(1), default=None,
                   help="resamples of the pairs behind the paired ΔE0 error (default 1000)")
    p.add_argument("--workers", type=integer_at_least(1), default=1, help="processes on this machine (default 1)")
    p.add_argument("--device", default="cpu", help="where the teacher (a torch model) runs, e.g. cuda (default cpu)")
    p.add_argument("--batch-size", type=integer_at_least(1), help="systems the teacher integrates together per process")
    p.add_argument("--start-for", type=positive_number, metavar="S",
                   help="start trajectories for S seconds only, then finish those started and stop (resumable)")
    p.add_argument("--merge-from", type=Path, nargs="+", default=[], metavar="DIR",
                   help="merge: folders of run directories to add to --out's")
    add_trust_argument(p)
    add_field_arguments(p, run_settings(), field_types())
    p.set_defaults(handler=_validate)


def _validate(args) -> int:
    from pyscatter.analysis.validation import PAIRED_DRAWS, Bar, format_condition, verdict_line
    from pyscatter.workflows.validate import Validation, conditions_of, merge, report, run_model, run_reference

    stages = args.stages or DEFAULT_STAGES
    bar = Bar(args.alpha, args.max_delta_e0, args.pairs_only)
    validation = Validation(
        teacher=args.teacher, model=args.model, out=args.out, temperature=args.temperature,
        conditions=conditions_of(args.facets, args.states, args.temperature, args.energies),
        reference_trajectories=args.reference_trajectories, model_trajectories=args.model_trajectories,
        pairs_only=args.pairs_only, workers=args.workers, device=args.device, batch_size=args.batch_size,
        trust_model=args.trust_model, last_start=None if args.start_for is None else time.time() + args.start_for,
        spec_options=field_values(args, run_settings()))
    validation.spec(validation.conditions[0], args.model)  # refuses bad run settings before anything runs
    if "reference" in stages and args.teacher is None:
        raise ValueError("the reference stage needs --teacher")
    progress = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if "merge" in stages:
        merge(args.out, args.merge_from, progress)
    if "reference" in stages:
        run_reference(validation, progress)
    if "model" in stages:
        run_model(validation, progress)
    if "report" not in stages:
        return 0
    record = report(validation, bar, args.draws or PAIRED_DRAWS)
    for condition in record["facets"].values():
        print(format_condition(condition))
    for condition in record["facets"].values():
        print(verdict_line(condition, bar))
    print(f"wrote {args.out / 'validation.json'}, {args.out / 'validation.md'}, {args.out / 'validation.png'}")
    verdicts = [c["verdict"] for c in record["facets"].values()]
    return 0 if verdicts and all(v == "pass" for v in verdicts) else 1
