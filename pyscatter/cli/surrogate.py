"""``pyscatter surrogate build``: a linear ACE surrogate of a teacher model (see :mod:`pyscatter.surrogate`);
``pyscatter surrogate committee``: a calibrated committee of one (:mod:`pyscatter.surrogate.committee`)."""

from __future__ import annotations

import argparse

from pyscatter.cli.main import add_trust_argument
from pyscatter.cli.validate import add_validate_command


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _states(text: str) -> tuple[tuple[int, int], ...]:
    """``"0:0,1:1"`` -> ((0, 0), (1, 1))."""
    try:
        return tuple((int(v), int(j)) for v, j in (s.split(":") for s in text.split(",") if s.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"states are v:J pairs separated by commas, got {text!r}") from None


def add_commands(commands, model_commands) -> None:
    """Register ``surrogate build`` on the top-level subparsers ``commands`` (no ``model`` subcommands)."""
    from pyscatter.surrogate.settings import SurrogateSettings

    d = SurrogateSettings()
    group = commands.add_parser("surrogate", help="fast linear ACE surrogates of a teacher model")
    sub = group.add_subparsers(dest="surrogate_command", required=True, parser_class=type(group))
    p = sub.add_parser("build", help="teacher trajectories -> k-means selection -> CI-NEB -> linear ACE fit -> error table (resumable)")
    p.add_argument("--teacher", required=True, help="teacher model: 'emt' or a model file (MACE, ACE)")
    p.add_argument("--out", required=True, help="build directory; rerun the same command to resume")
    p.add_argument("--facets", type=lambda t: tuple(x for x in t.split(",") if x), default=d.facets, help=f"default {','.join(d.facets)}")
    p.add_argument("--temperatures", type=_floats, default=d.temperatures, help="K, default 300,600,900")
    p.add_argument("--states", type=_states, default=d.states, help="v:J pairs, default 0:0,1:1")
    p.add_argument("--energies", type=_floats, default=d.collision_energies, help="collision energies, eV, default 0.2,0.5,0.9")
    p.add_argument("--trajectories", type=int, default=d.trajectories, help=f"per condition (default {d.trajectories})")
    p.add_argument("--dt", type=float, default=d.dt, help=f"fs (default {d.dt})")
    p.add_argument("--max-time", type=float, default=d.max_time, help=f"fs (default {d.max_time:g})")
    p.add_argument("--initial-height", type=float, default=d.initial_height, help=f"Å (default {d.initial_height:g})")
    p.add_argument("--snapshots", type=int, default=d.n_snapshots, help=f"thermal slabs per facet and T (default {d.n_snapshots})")
    p.add_argument("--equilibration", type=float, default=d.equilibration_fs, help=f"fs of Langevin equilibration (default {d.equilibration_fs:g})")
    p.add_argument("--approach-frames", type=int, default=d.approach_frames,
                   help=f"teacher-labelled H2-over-slab pairs per facet and T on the far approach (default {d.approach_frames})")
    p.add_argument("--approach-heights", type=_floats, default=d.approach_heights,
                   help="their centre-of-mass heights, Å, low,high (default {:g},{:g})".format(*d.approach_heights))
    p.add_argument("--atom-frames", type=int, default=d.atom_frames,
                   help=f"teacher-labelled structures per facet and T of two separate H atoms in and on the slab (default {d.atom_frames})")
    p.add_argument("--atom-depth", type=float, default=d.atom_depth,
                   help=f"how far under the top layer they go, Å (default {d.atom_depth:g})")
    p.add_argument("--atom-weight", type=float, default=d.atom_weight,
                   help=f"weight of their rows in the fit (default {d.atom_weight:g})")
    p.add_argument("--n-train", type=int, default=d.n_train, help=f"k-means training frames (default {d.n_train})")
    p.add_argument("--n-test", type=int, default=d.n_test, help=f"held-out frames (default {d.n_test})")
    p.add_argument("--neb-images", type=int, default=d.neb_images, help=f"default {d.neb_images}")
    p.add_argument("--neb-steps", type=int, default=d.neb_steps, help=f"default {d.neb_steps}")
    p.add_argument("--mep-samples", type=int, default=d.mep_samples, help=f"teacher-labelled displaced copies per MEP image (default {d.mep_samples})")
    p.add_argument("--mep-rattle", type=float, default=d.mep_rattle, help=f"H displacement of those copies, Å (default {d.mep_rattle:g})")
    p.add_argument("--cutoff", type=float, default=d.cutoff, help=f"ACE cutoff, Å (default {d.cutoff:g})")
    p.add_argument("--order", type=int, default=d.order, help=f"correlation order (default {d.order})")
    p.add_argument("--max-degree", type=int, default=d.max_degree, help=f"ace-jax total-degree bound (default {d.max_degree})")
    p.add_argument("--energy-weight", type=float, default=d.energy_weight, help=f"default {d.energy_weight:g}")
    p.add_argument("--interaction-weight", type=float, default=d.interaction_weight,
                   help=f"weight of each approach pair's interaction-energy row, in energy rows (0: none; default {d.interaction_weight:g})")
    p.add_argument("--prior-strength", type=float, default=None,
                   help="lambda / scale of the fit's smoothness prior (default: chosen from 1e-14 ... 1e-2 on a validation "
                        "split); changing it in a finished build solves the fit again from its posterior, in seconds")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"teacher structures per call (default {d.batch_size})")
    p.add_argument("--seed", type=int, default=d.seed)
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

    settings = SurrogateSettings(
        facets=args.facets, temperatures=args.temperatures, states=args.states, collision_energies=args.energies,
        trajectories=args.trajectories, dt=args.dt, max_time=args.max_time, initial_height=args.initial_height,
        n_snapshots=args.snapshots, equilibration_fs=args.equilibration, approach_frames=args.approach_frames,
        approach_heights=args.approach_heights, atom_frames=args.atom_frames, atom_depth=args.atom_depth, atom_weight=args.atom_weight, n_train=args.n_train, n_test=args.n_test,
        neb_images=args.neb_images, neb_steps=args.neb_steps, mep_samples=args.mep_samples, mep_rattle=args.mep_rattle, cutoff=args.cutoff, order=args.order,
        max_degree=args.max_degree, energy_weight=args.energy_weight, interaction_weight=args.interaction_weight,
        prior_strength=args.prior_strength, batch_size=args.batch_size, seed=args.seed,
    )
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
