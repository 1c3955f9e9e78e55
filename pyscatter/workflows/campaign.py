"""Campaigns: many conditions (facets x states x temperatures x molecules x models, each at several
collision energies) from one TOML file, run one after another through :func:`~pyscatter.workflows.run.run`.

Every (facet, state, T, molecule, model) is one :class:`~pyscatter.conditions.RunSpec` and lands in
``ROOT/`` + :func:`~pyscatter.workflows.run.default_out_dir`, the directory ``pyscatter run`` uses from
``ROOT``: a campaign resumes from, and can be resumed by, plain runs. Example::

    facets = ["111", "100"]
    states = [[0, 0], [1, 1]]        # (v, J)
    energies = [0.2, 0.3, 0.5]       # eV
    models = ["h2cu-ace"]            # shipped model names, "emt" or model files (as for pyscatter run)
    T = 925                          # K, a number or a list
    molecule = "H2"                  # a name or a list
    trajectories = 10000             # per collision energy
    seed = 0
    # optional: every other `pyscatter run` setting by its name: snapshots, dt (fs), lattice_constant (Å),
    # free_flight, max_time (fs), initial_height, scatter_height, dissociation_distance (Å), max_energy_error (eV),
    # batch_size
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from pyscatter.conditions import (
    ConditionError,
    RunSpec,
    check_collision_energy,
    check_trajectories,
    key_of,
    spec_fields,
)
from pyscatter.workflows.settings import Execution

REQUIRED = ("facets", "states", "energies", "models", "T", "trajectories")
AXES = {"models": "model", "molecule": "molecule", "T": "temperature", "facets": "surface"}
"""Keys that may hold a list (the campaign is their product, with ``states``) and the RunSpec field of each."""
SETTINGS = {key_of(f): f.name for f in spec_fields() if f.name not in (*AXES.values(), "v", "J")}
"""Every other RunSpec/Termination field, by its campaign key (generated from the dataclasses)."""


@dataclass(frozen=True)
class Campaign:
    """The run specs of a campaign, the collision energies (eV) of each and the trajectories per energy."""

    specs: tuple[RunSpec, ...]
    energies: tuple[float, ...]
    trajectories: int
    batch_size: int | None = None

    @property
    def total(self) -> int:
        """Trajectories of the whole campaign."""
        return len(self.specs) * len(self.energies) * self.trajectories


def _list(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def parse_campaign(table: dict) -> Campaign:
    """A :class:`Campaign` from a parsed TOML table; every condition is checked before anything runs."""
    missing = [key for key in REQUIRED if key not in table]
    unknown = sorted(set(table) - set(REQUIRED) - set(AXES) - set(SETTINGS) - {"batch_size"})
    if missing or unknown:
        raise ConditionError(f"campaign: missing keys {missing}, unknown keys {unknown}")
    states = _list(table["states"])
    if not all(isinstance(s, list) and len(s) == 2 for s in states):
        raise ConditionError(f"campaign: states must be [v, J] pairs, got {states}")
    settings = {name: table[key] for key, name in SETTINGS.items() if key in table}
    axes = [_list(table.get(key, "H2")) for key in AXES]
    specs = tuple(
        RunSpec.from_dict({"free_flight": True, **settings, "surface": str(facet), "model": model, "temperature": T,
                           "molecule": molecule, "v": v, "J": J})
        for (model, molecule, T, facet), (v, J) in itertools.product(itertools.product(*axes), states)
    )
    energies = tuple(check_collision_energy(e) for e in _list(table["energies"]))
    if len(set(specs)) != len(specs) or len(set(energies)) != len(energies) or not specs or not energies:
        raise ConditionError("campaign: every list needs at least one entry and no repeats")
    batch_size = table.get("batch_size")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ConditionError(f"batch_size must be a positive integer, got {batch_size!r}")
    return Campaign(specs, energies, check_trajectories(table["trajectories"]), batch_size)


def load_campaign(path: str | Path) -> Campaign:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise ConditionError(f"{path}: not valid TOML: {err}") from None
    except OSError as err:
        raise ConditionError(f"cannot read campaign file {path}: {err.strerror}") from None
    return parse_campaign(table)


def run_directory(root: str | Path, spec: RunSpec) -> Path:
    from pyscatter.workflows.run import default_out_dir

    return Path(root) / default_out_dir(spec)


CampaignProgress = Callable[[RunSpec, float, int], None]


def run_campaign(
    campaign: Campaign,
    root: str | Path = ".",
    workers: int = 1,
    threads: int = 1,
    executor: Executor | None = None,
    on_progress: CampaignProgress | None = None,
    trust_model: bool = False,
) -> list[dict]:
    """Run or resume every condition; one summary dict (that of ``pyscatter run --json`` plus ``run_dir``) each.

    ``on_progress(spec, collision_energy, done)`` reports the trajectories done so far of a condition.
    """
    execution = Execution(workers=workers, threads=threads, batch_size=campaign.batch_size, executor=executor)
    from pyscatter.models import ModelRef
    from pyscatter.workflows.run import run

    models = {name: ModelRef(name, trust=trust_model).load()[0] for name in dict.fromkeys(s.model for s in campaign.specs)}  # fail early
    rows = []
    for spec in campaign.specs:
        directory = run_directory(root, spec)
        report = None if on_progress is None else lambda energy, done, total, tally, spec=spec: on_progress(spec, energy, done)
        summaries = run(spec, campaign.energies, campaign.trajectories, directory, model=models[spec.model],
                        on_progress=report, execution=execution)
        for s in summaries:
            if on_progress is not None:
                on_progress(spec, s["collision_energy"], s["n_trajectories"])
            rows.append({**s, "run_dir": str(directory)})
    return rows


COLUMNS = ("surface", "T", "molecule", "v", "J", "model", "collision_energy", "n_trajectories", "p_stick",
           "p_stick_ci", "p_scatter", "p_trapped", "force_calls", "wall_time_s", "run_dir")


def format_summary(rows: list[dict]) -> str:
    """The campaign's table: one row per condition, P_stick with its 95 % Wilson interval."""
    from pyscatter.analysis.tally import PROBABILITY_HEADER, probability_columns

    lines = [f"{'facet':>5} {'T (K)':>6} {'mol':>3} {'v':>2} {'J':>2} {'model':>10} {'E (eV)':>7} {'N':>6} "
             f"{PROBABILITY_HEADER}"]
    for r in rows:
        lines.append(
            f"{r['surface']:>5} {r['T']:6g} {r['molecule']:>3} {r['v']:2d} {r['J']:2d} {Path(r['model']).stem[:10]:>10}"
            f" {r['collision_energy']:7.3f} {r['n_trajectories']:6d} {probability_columns(r)}"
        )
    return "\n".join(lines)


def write_summary(rows: list[dict], stem: str | Path) -> tuple[Path, Path]:
    """``STEM.csv`` (the 95 % interval as two columns) and ``STEM.json`` (the summary dicts); their paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".json")
    fields = [c for c in COLUMNS if c != "p_stick_ci"]
    fields[fields.index("p_stick") + 1:fields.index("p_stick") + 1] = ["p_stick_ci_low", "p_stick_ci_high"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            lo, hi = r["p_stick_ci"]
            writer.writerow({**{c: r[c] for c in fields if c in r}, "p_stick_ci_low": lo, "p_stick_ci_high": hi})
    json_path.write_text(json.dumps(rows, indent=1) + "\n")
    return csv_path, json_path
