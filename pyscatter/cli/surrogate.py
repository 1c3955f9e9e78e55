"""``pyscatter surrogate build``: a linear ACE surrogate of a teacher model (see :mod:`pyscatter.surrogate`);
``pyscatter surrogate committee``: a calibrated committee of one (:mod:`pyscatter.surrogate.committee`)."""

from __future__ import annotations

import dataclasses
import typing

from pyscatter.cli.arguments import add_field_arguments, add_trust_argument, field_values
from pyscatter.cli.validate import add_validate_command


def add_commands(commands, model_commands) -> None:
    """Register ``surrogate build`` on the top-level subparsers ``commands`` (no ``model`` subcommands)."""
    from pyscatter.surrogate.settings import SurrogateSettings

    group = commands.add_parser("surrogate", help="fast linear ACE surrogates of a teacher model")
    sub = group.add_subparsers(dest="surrogate_command", required=True, parser_class=type(group))
    p = sub.add_parser("build", help="teacher trajectories -> k-means selection -> CI-NEB -> linear ACE fit -> error table (resumable)")
    p.add_argument("--teacher", required=True, help="teacher model: 'emt' or a model file (MACE, ACE)")
    p.add_argument("--out", required=True, help="build directory; rerun the same command to resume")
    add_field_arguments(p, dataclasses.fields(SurrogateSettings), typing.get_type_hints(SurrogateSettings))
    add_trust_argument(p)
    p.set_defaults(handler=_build)
    p = sub.add_parser("committee", help="K readouts of a linear ACE model drawn from its posterior, calibrated on held-out "
                       "teacher frames, in one file")
    p.add_argument("--model", default="h2cu-ace", help="a shipped ACE model's name or an .npz (default h2cu-ace)")
    p.add_argument("--members", type=int, default=8, help="K, even (antithetic pairs; default 8)")
    p.add_argument("--out", required=True, help="the committee file (.npz)")
    p.add_argument("--method", choices=("pops", "bayes"), default="pops", help="posterior (default pops)")
    p.add_argument("--teacher", help="teacher model file, to label the frames (not needed once --work holds them)")
    p.add_argument("--work", help="working directory of the teacher-labelled frames (default runs/committee_<model>)")
    p.add_argument("--seed", type=int, default=0)
    add_trust_argument(p)
    p.set_defaults(handler=_committee)
    add_validate_command(sub)


def _build(args) -> int:
    import sys

    from pyscatter.models import load_model
    from pyscatter.surrogate.pipeline import build
    from pyscatter.surrogate.settings import SurrogateSettings

    settings = SurrogateSettings(**field_values(args, dataclasses.fields(SurrogateSettings)))
    teacher = load_model(args.teacher, trust=args.trust_model)
    build(args.out, teacher, settings, progress=lambda message: print(message, file=sys.stderr, flush=True))
    print(f"surrogate: {args.out}/model.npz; report: {args.out}/report.md")
    return 0


def _committee(args) -> int:
    import json
    import sys
    from pathlib import Path

    from pyscatter.models import load_model
    from pyscatter.surrogate.committee import build_committee
    from pyscatter.surrogate.settings import SurrogateError

    def teacher():
        if args.teacher is None:
            raise SurrogateError("the working directory holds no teacher-labelled frames yet: give --teacher")
        return load_model(args.teacher, trust=args.trust_model)

    work = Path(args.work or f"runs/committee_{Path(args.model).stem}")
    record = build_committee(args.model, Path(args.out), work, teacher, args.members, args.method, args.seed,
                             progress=lambda message: print(message, file=sys.stderr, flush=True))
    print(json.dumps({k: record[k] for k in ("members", "method", "scale", "coverage_before", "coverage_after")}, indent=1))
    return 0
