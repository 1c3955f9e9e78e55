"""``pyscatter campaign campaign.toml``: many conditions, one progress display, one summary table."""

from __future__ import annotations

import json
import sys

from pyscatter.cli.arguments import add_execution_arguments, check_dask_arguments, open_executor_of


def add_commands(commands, model_commands) -> None:
    campaign = commands.add_parser("campaign", help="run many conditions from a TOML file (resumable)")
    campaign.add_argument("file", help="campaign TOML: facets, states, energies, models, T, trajectories, ...")
    campaign.add_argument("--root", default=".", help="run directories go to ROOT/runs/<condition> (default .)")
    add_execution_arguments(campaign)
    campaign.add_argument("--json", action="store_true", help="print one JSON object per condition")
    campaign.set_defaults(handler=_campaign)


def _campaign(args) -> int:
    from pathlib import Path

    from pyscatter.workflows.campaign import (
        format_summary,
        load_campaign,
        run_campaign,
        write_summary,
    )
    from pyscatter.workflows.progress import ProgressBar
    from pyscatter.models import model_notes

    campaign = load_campaign(args.file)
    check_dask_arguments(args)
    for note in dict.fromkeys(n for spec in campaign.specs for n in model_notes(spec.model, spec.surface)):
        print(f"pyscatter: note: {note}", file=sys.stderr)
    with open_executor_of(args) as executor, ProgressBar() as bar:
        bar.expect({(spec, energy): campaign.trajectories for spec in campaign.specs for energy in campaign.energies})
        rows = run_campaign(campaign, args.root, workers=args.workers, threads=args.threads, executor=executor,
                            on_progress=bar.condition, trust_model=args.trust_model)
    csv_path, json_path = write_summary(rows, Path(args.root) / f"{Path(args.file).stem}_summary")
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(format_summary(rows))
        print(f"summary: {csv_path}, {json_path}")
    return 0
