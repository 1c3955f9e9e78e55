"""Per-trajectory data: ``pyscatter export``, ``pyscatter replay`` and ``pyscatter run --save-trajectories``.

``add_commands`` also extends the ``run`` command registered before it (:mod:`pyscatter.cli.main`) with
``--save-trajectories N [--save-outcome O]``: after the run, the first N matching trajectories of each
energy are replayed and written as extended XYZ.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from pyscatter.cli.arguments import add_trust_argument, integer_at_least, run_spec

FORMATS = ("csv", "parquet", "json")
OUTCOMES = ("dissociated", "scattered", "trapped", "failed")


def add_commands(commands, model_commands) -> None:
    export = commands.add_parser("export", help="one row per trajectory: outcome, final and initial state")
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--format", choices=FORMATS, default="csv", help="file format (default csv; parquet needs pyarrow)")
    export.add_argument("--out", default=None, help="output file (default DIR/trajectories.FORMAT)")
    export.set_defaults(handler=_export)

    replay = commands.add_parser("replay", help="integrate one stored trajectory again and write its frames (extxyz)")
    replay.add_argument("directory", metavar="DIR")
    replay.add_argument("--index", type=integer_at_least(0), required=True, help="trajectory index")
    replay.add_argument("--energy", type=float, default=None, help="collision energy, eV (needed if the run has several)")
    replay.add_argument("--out", required=True, help="extended XYZ file, one frame per fs")
    add_trust_argument(replay)
    replay.set_defaults(handler=_replay)

    run = commands.choices["run"]
    run.add_argument("--save-trajectories", type=integer_at_least(0), default=0, metavar="N",
                     help="after the run, replay the first N trajectories (by index) of each energy and write them to "
                          "DIR/trajectories/E<energy>_<index>.extxyz (one frame per fs, energies and forces)")
    run.add_argument("--save-outcome", choices=OUTCOMES, default=None,
                     help="with --save-trajectories: only trajectories with this outcome")
    run.set_defaults(handler=_run_then_save(run.get_default("handler")))


def _run_then_save(run):
    def handler(args) -> int:
        code = run(args)
        if code != 0 or not args.save_trajectories:
            return code
        from pyscatter.workflows.replay import save_trajectories
        from pyscatter.workflows.run import default_out_dir

        out = args.out or default_out_dir(run_spec(args))
        written = save_trajectories(out, args.save_trajectories, args.save_outcome, args.energy,
                                    trust_model=args.trust_model)
        print(f"wrote {len(written)} trajectories to {Path(out) / 'trajectories'}")
        return 0

    return handler


def _export(args) -> int:
    from pyscatter.analysis.curves import load_results

    if args.format == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("--format parquet needs pyarrow (pip install pyarrow); csv and json need nothing")
    table = load_results(args.directory).trajectories
    out = Path(args.out or Path(args.directory) / f"trajectories.{args.format}")
    if args.format == "csv":
        table.to_csv(out, index=False)
    elif args.format == "parquet":
        table.to_parquet(out, index=False)
    else:
        table.to_json(out, orient="records", indent=1)
    print(f"wrote {len(table)} trajectories to {out}")
    return 0


def _replay(args) -> int:
    from pyscatter.workflows.replay import replay

    again = replay(args.directory, args.index, args.energy, trust_model=args.trust_model)
    again.write(args.out)
    r = again.result
    print(f"trajectory {r.index} at {again.collision_energy:g} eV: {r.outcome.label} at {r.end_time:g} fs; "
          f"wrote {len(again.frames)} frames to {args.out}", file=sys.stdout)
    return 0
