"""Validate a model against the published MACE teacher on the observable: the preset conditions of
:mod:`pyscatter.workflows.validate` (``pyscatter surrogate validate`` with the stores of the README's validation).

Three run directories per condition (a facet for H2(v=1, J=1); ``111v0``: H2(v=0, J=1) on Cu(111)) under ``--out``
(default ``benchmarks/results/validation``): ``reference_Cu<condition>`` (the teacher in ``../shared``),
``paired_Cu<condition>`` (the model from the teacher's initial conditions, a partner for each teacher trajectory) and
``unpaired_Cu<condition>`` (the model on its own snapshots).

``--device cuda --batch-size 256`` runs the reference on a GPU, each process integrating that many trajectories at a
time; ``benchmarks/validate_on_gpu.sh`` runs several such processes on copies of the run directories until a deadline,
and the ``merge`` stage adds what they computed to the committed stores.

Stages (each resumes; run them in any order, again and again):

    python benchmarks/validate_model.py reference   # the reference runs, in rounds over all energies
    python benchmarks/validate_model.py model       # paired and unpaired runs of the model
    python benchmarks/validate_model.py report      # tables, tests, erf fits, plot, JSON, markdown table, verdicts
    python benchmarks/validate_model.py merge --merge-from DIR  # add the trajectories of copies resumed elsewhere

``--energies`` restricts the reference and model stages to some of a condition's energies, e.g. more reference
trajectories (and their partners) where a comparison is undecided; the report takes each energy's own count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pyscatter.analysis.validation import Bar, format_condition, verdict_line
from pyscatter.conditions import VALIDATION_ENERGIES, VALIDATION_TEMPERATURE
from pyscatter.workflows.validate import (
    Condition,
    Validation,
    merge,
    parse_condition,
    report,
    run_model,
    run_reference,
)

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT.parent / "shared" / "models" / "h2cu_mace_stark2023.model"
CONDITIONS = VALIDATION_ENERGIES
"""Collision energies (eV) per condition at 925 K (:data:`pyscatter.conditions.VALIDATION_ENERGIES`)."""


def energies(condition: str, args) -> tuple[float, ...]:
    """The collision energies (eV) to run for a condition: ``--energies`` (a subset of the condition's, in the order
    given: more trajectories where a comparison is undecided), by default all of :data:`CONDITIONS`."""
    if not args.energies:
        return CONDITIONS[condition]
    unknown = sorted(set(args.energies) - set(CONDITIONS[condition]))
    if unknown:
        sys.exit(f"--energies {unknown} eV: not among the energies of condition {condition}, {CONDITIONS[condition]}")
    return tuple(args.energies)


def validation(args) -> Validation:
    """The :class:`Validation` of the command line (every condition's energies checked before any runs)."""
    conditions = tuple(Condition(*parse_condition(name), energies(name, args)) for name in args.facets)
    return Validation(teacher=args.reference, model=args.model, conditions=conditions, out=args.out,
                      temperature=VALIDATION_TEMPERATURE, reference_trajectories=args.reference_trajectories,
                      model_trajectories=args.model_trajectories, workers=args.workers, device=args.device,
                      batch_size=args.batch_size, trust_model=True, last_start=args.last_start)


def print_report(args) -> dict:
    record = report(validation(args), Bar())
    for condition in record["facets"].values():
        print(format_condition(condition))
    for condition in record["facets"].values():
        print(verdict_line(condition, Bar()))
    print(f"wrote {args.out / 'validation.json'}, {args.out / 'validation.md'}, {args.out / 'validation.png'}")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("reference", "model", "report", "merge"))
    parser.add_argument("--model", default="h2cu-ace")
    parser.add_argument("--reference", default=str(TEACHER))
    parser.add_argument("--facets", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    parser.add_argument("--energies", type=float, nargs="+", help="eV, a subset of each condition's (default all)")
    parser.add_argument("--reference-trajectories", type=int, default=150)
    parser.add_argument("--model-trajectories", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="where the reference (a torch model) runs, e.g. cuda")
    parser.add_argument("--batch-size", type=int, help="systems integrated together per process (default: the model's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "validation")
    parser.add_argument("--merge-from", type=Path, nargs="+", default=[],
                        help="merge: folders of run directories to add to --out's")
    parser.add_argument("--start-for", type=float, help="s: start trajectories for this long only, then finish those "
                        "started and stop (resumable)")
    args = parser.parse_args()
    args.last_start = None if args.start_for is None else time.time() + args.start_for
    if args.stage == "merge":
        merge(args.out, args.merge_from)
    elif args.stage == "report":
        print_report(args)
    else:
        {"reference": run_reference, "model": run_model}[args.stage](validation(args))


if __name__ == "__main__":
    main()
