"""Validate a model against its teacher on the observable (``pyscatter surrogate validate``): sticking probabilities
along whole curves, paired and unpaired, with a verdict per condition.

Three run directories per condition (a facet and a state (v, J) at one surface temperature) under ``out``, named
``<kind>_Cu<condition>`` (:func:`condition_name`: ``111`` for H2(v=1, J=1) on Cu(111), ``111v0`` for v=0, J=1):

- ``reference_Cu<condition>``: the teacher, in rounds over all energies (:data:`ROUNDS`).
- ``paired_Cu<condition>``: the model from identical initial conditions: the reference run's thermal snapshots (and
  lattice constant) and the same seed, so trajectory i has the same slab snapshot, impact point, orientation and
  vibrational phase in both (each model quantises the molecule on its own PES); a partner for each reference
  trajectory.
- ``unpaired_Cu<condition>``: the model on its own snapshots, which is what users get (rounds of
  :data:`MODEL_ROUNDS`); none with ``pairs_only``.

A state other than (v=1, J=1) starts its reference and unpaired runs from the facet's (v=1, J=1) reference and
unpaired snapshots when those exist (the slab does not depend on the molecule's state). Every stage resumes; run them
in any order, again and again. The statistics are :mod:`pyscatter.analysis.validation`'s.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyscatter.analysis.stored import open_run
from pyscatter.analysis.plotting import plot_validation
from pyscatter.analysis.validation import (
    PAIRED_DRAWS,
    Bar,
    condition_record,
    markdown_table,
    outcomes,
    vibrational_efficacy,
)
from pyscatter.conditions import (
    FACETS,
    VALIDATION_ENERGIES,
    VALIDATION_TEMPERATURE,
    ConditionError,
    RunSpec,
    Termination,
    check_collision_energy,
)
from pyscatter.models import load_model, model_object
from pyscatter.models.base import ForceModel
from pyscatter.store import DB_NAME, SNAPSHOT_FILE, RunStore
from pyscatter.workflows.run import run

ROUNDS = (25, 50, 100, 150)
"""Reference trajectories per energy after each round: every energy gets the first 25 before any gets more."""
MODEL_ROUNDS = (100, 250, 500, 1000)
"""Unpaired model trajectories per energy after each round, likewise."""
BASE_STATE = (1, 1)
"""(v, J) whose run directories are named by the facet alone, and whose snapshots other states start from."""
KINDS = ("reference", "paired", "unpaired")


def condition_name(surface: str, v: int, J: int) -> str:
    """``111`` for (v=1, J=1) on Cu(111), else the facet with ``v<v>`` and ``J<J>`` where they differ from 1, e.g.
    ``111v0``."""
    return surface + ("" if v == 1 else f"v{v}") + ("" if J == 1 else f"J{J}")


def parse_condition(name: str) -> tuple[str, int, int]:
    """(facet, v, J) of a :func:`condition_name`."""
    match = re.fullmatch(r"(\d{3})(?:v(\d+))?(?:J(\d+))?", name)
    if match is None or match[1] not in FACETS:
        raise ConditionError(f"{name!r} is not a condition: a facet ({', '.join(FACETS)}) and optionally v<n>, J<n>")
    return match[1], int(match[2] or 1), int(match[3] or 1)


@dataclass(frozen=True)
class Condition:
    """One facet and state (v, J) and its collision energies (eV)."""

    surface: str
    v: int
    J: int
    energies: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.energies:
            raise ConditionError(f"condition {self.name}: no collision energies")
        object.__setattr__(self, "energies", tuple(check_collision_energy(e) for e in self.energies))

    @property
    def name(self) -> str:
        return condition_name(self.surface, self.v, self.J)


def conditions_of(surfaces: Sequence[str], states: Sequence[tuple[int, int]], temperature: float,
                  energies: Sequence[float] | None = None) -> tuple[Condition, ...]:
    """Every facet with every state (v, J): at ``energies`` (eV), by default the condition's
    :data:`VALIDATION_ENERGIES` (which hold at :data:`VALIDATION_TEMPERATURE` only)."""
    result = []
    for surface in surfaces:
        for v, J in states:
            name = condition_name(surface, v, J)
            chosen = energies or (VALIDATION_ENERGIES.get(name) if temperature == VALIDATION_TEMPERATURE else None)
            if not chosen:
                raise ConditionError(f"condition {name} at {temperature:g} K has no preset collision energies "
                                     "(--energies)")
            result.append(Condition(surface, v, J, tuple(chosen)))
    return tuple(result)


Model = str | ForceModel


@dataclass(frozen=True)
class Validation:
    """A model against its teacher on some conditions, with run directories under ``out``.

    teacher, model: names or files (:func:`pyscatter.models.load_model`) or model objects (then run in this process,
    or sent pickled to ``workers``); the teacher is needed by the reference stage only. temperature: K.
    reference_trajectories: teacher trajectories per energy, each with a paired partner. model_trajectories:
    unpaired model trajectories per energy. pairs_only: no unpaired runs. spec_options: further
    :class:`~pyscatter.conditions.RunSpec` and :class:`~pyscatter.conditions.Termination` fields (seed, dt fs,
    n_snapshots, max_time fs, ...), the same for both models. device, batch_size: where and how many systems at a time
    the teacher runs (e.g. "cuda", 256); the model runs on the CPU with its own default. trust_model: load pickled
    model files. last_start: ``time.time()`` after which no trajectory starts (the stages resume).
    """

    teacher: Model | None
    model: Model
    conditions: tuple[Condition, ...]
    out: Path
    temperature: float = VALIDATION_TEMPERATURE
    reference_trajectories: int = 150
    model_trajectories: int = 1000
    pairs_only: bool = False
    spec_options: dict = field(default_factory=dict)
    workers: int = 1
    device: str = "cpu"
    batch_size: int | None = None
    trust_model: bool = False
    last_start: float | None = None

    def spec(self, condition: Condition, model: str) -> RunSpec:
        """The run specification of ``condition`` for the model named ``model``."""
        options = dict(self.spec_options)
        ends = {f.name for f in dataclasses.fields(Termination)}
        termination = Termination(**{k: options.pop(k) for k in list(options) if k in ends})
        return RunSpec(surface=condition.surface, temperature=self.temperature, v=condition.v, J=condition.J,
                       model=model, termination=termination, **options)

    def directory(self, kind: str, condition: Condition) -> Path:
        """``out/<kind>_Cu<condition>``."""
        return Path(self.out) / f"{kind}_Cu{condition.name}"

    def base_snapshots(self, kind: str, condition: Condition) -> dict:
        """``run`` arguments for a ``kind`` run ("reference" or "unpaired") of a state other than :data:`BASE_STATE`:
        start from the facet's base-state ``kind`` run's snapshots when they exist; none for the base state."""
        snapshots = Path(self.out) / f"{kind}_Cu{condition.surface}" / SNAPSHOT_FILE
        other = (condition.v, condition.J) != BASE_STATE
        return dict(snapshots_from=snapshots) if other and snapshots.is_file() else {}


Progress = Callable[[str], None]


def _named(model: Model) -> tuple[str, ForceModel | None]:
    """A model's name for its run specifications and the object to run (None: loaded by name)."""
    return (model, None) if isinstance(model, str) else model_object(model)


def _rounds(rounds: Sequence[int], target: int) -> list[int]:
    return sorted({r for r in rounds if r < target} | {target})


def run_reference(validation: Validation, progress: Progress = print) -> None:
    """The teacher's runs, in rounds over all conditions and energies (:data:`ROUNDS`)."""
    if validation.teacher is None:
        raise ValueError("the reference stage needs a teacher model")
    name, teacher = _named(validation.teacher)
    if teacher is None:  # loaded once, not per round and energy
        teacher = load_model(name, trust=validation.trust_model, device=validation.device)
    for n in _rounds(ROUNDS, validation.reference_trajectories):
        for condition in validation.conditions:
            reuse = validation.base_snapshots("reference", condition)
            for energy in condition.energies:  # one energy per call: the store closes (and checkpoints) in between
                summary = run(validation.spec(condition, name), [energy], n,
                              out_dir=validation.directory("reference", condition), model=teacher,
                              workers=validation.workers, trust_model=validation.trust_model, device=validation.device,
                              batch_size=validation.batch_size, last_start=validation.last_start, **reuse)[0]
                progress(f"reference Cu({condition.name}) {energy} eV: {summary['n_dissociated']}/"
                         f"{summary['n_trajectories']}")


def run_model(validation: Validation, progress: Progress = print) -> None:
    """The model's runs: a paired partner for each reference trajectory, then (unless ``pairs_only``) the unpaired
    runs in rounds over all energies (:data:`MODEL_ROUNDS`)."""
    name, model = _named(validation.model)
    for condition in validation.conditions:  # every condition's checked before any runs
        snapshots = validation.directory("reference", condition) / SNAPSHOT_FILE
        if not snapshots.is_file():
            raise ValueError(f"no reference snapshots at {snapshots}: run the reference stage first")
    common = dict(workers=validation.workers, trust_model=validation.trust_model, last_start=validation.last_start,
                  **({} if model is None else {"model": model}))
    for condition in validation.conditions:
        spec = validation.spec(condition, name)
        snapshots = validation.directory("reference", condition) / SNAPSHOT_FILE
        for summary in run(spec, condition.energies, validation.reference_trajectories,
                           out_dir=validation.directory("paired", condition), snapshots_from=snapshots, **common):
            progress(f"paired Cu({condition.name}) {summary['collision_energy']} eV: {summary['n_dissociated']}/"
                     f"{summary['n_trajectories']}")
        if validation.pairs_only:
            continue
        for n in _rounds(MODEL_ROUNDS, validation.model_trajectories):
            for summary in run(spec, condition.energies, n, out_dir=validation.directory("unpaired", condition),
                               **validation.base_snapshots("unpaired", condition), **common):
                progress(f"unpaired Cu({condition.name}) {summary['collision_energy']} eV: "
                         f"{summary['n_dissociated']}/{summary['n_trajectories']}")


def report(validation: Validation, bar: Bar = Bar(), draws: int = PAIRED_DRAWS) -> dict:
    """The comparison of every condition with a reference run (:func:`pyscatter.analysis.validation.condition_record`,
    with the condition's facet, v, J and T), written to ``out`` as ``validation.json``, ``validation.md`` (the
    per-energy table and the verdicts) and ``validation.png``; returned. ValueError if no condition has a reference
    run."""
    names = {k: None if m is None else _named(m)[0] for k, m in (("reference", validation.teacher),
                                                                 ("model", validation.model))}
    record = {**names, "bar": dataclasses.asdict(bar), "facets": {}}
    for condition in validation.conditions:
        dirs = {k: validation.directory(k, condition) for k in KINDS}
        if not (dirs["reference"] / DB_NAME).is_file():
            continue
        runs = {k: outcomes(d) for k, d in dirs.items() if (d / DB_NAME).is_file()}
        described = {"surface": condition.surface, "molecule": validation.spec(condition, "").molecule,
                     "v": condition.v, "J": condition.J, "T": validation.temperature}
        record["facets"][condition.name] = described | condition_record(runs, bar, draws)
    if not record["facets"]:
        raise ValueError(f"no reference runs under {validation.out} for these conditions: run the reference stage first")
    record |= vibrational_efficacy(record)
    out = Path(validation.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "validation.json").write_text(json.dumps(record, indent=1) + "\n")
    verdicts = [f"- Cu({name}): **{c['verdict']}**" + (f" ({'; '.join(c['reasons'])})" if c["reasons"] else "")
                for name, c in record["facets"].items()]
    (out / "validation.md").write_text(markdown_table(record) + f"\nVerdicts ({bar}):\n\n" + "\n".join(verdicts) + "\n")
    plot_validation(record, out / "validation.png", f"reference ({names['reference'] or 'teacher'})")
    return record


def merge(out: Path, sources: Sequence[Path], progress: Progress = print) -> None:
    """Add the trajectories of the run directories under each of ``sources`` (copies of ``out``'s, resumed elsewhere,
    e.g. on a GPU machine) to the run directories of the same name under ``out``."""
    for folder in sources:
        for source in sorted(Path(folder).glob("*_Cu*/")):
            target = Path(out) / source.name
            if not (source / DB_NAME).is_file():
                continue
            if not (target / DB_NAME).is_file():
                raise ValueError(f"{source}: no run {target} to merge it into (copy the directory instead)")
            with open_run(source) as given, RunStore(target, given.spec, given.provenance) as store:
                progress(f"{source} -> {target}: {store.merge(source)} trajectories added")
