"""The pipeline in one place: conditions -> initial conditions -> engine -> outcomes -> store -> tally.

:func:`run` is what ``pyscatter run`` calls: it validates everything before touching the run
directory, prepares (or reuses) the thermal slab snapshots, runs the missing trajectories of
each collision energy through the execution seam, and returns one summary per energy.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers

import pyscatter
from pyscatter.analysis.tally import Tally
from pyscatter.conditions import RunSpec, check_collision_energy, check_trajectories
from pyscatter.engine.engines import check_friction, engine_named
from pyscatter.initial.sampler import quantised_molecule
from pyscatter.initial.surface import lattice_constant_0K, read_slab, run_slab, thermal_expansion_factor
from pyscatter.initial.thermal import ThermalSnapshots, cached_snapshots, load_or_thermalise
from pyscatter.models.base import ForceModel, check_species, file_sha256
from pyscatter.models.reference import ModelRef
from pyscatter.outcomes import TrajectoryResult
from pyscatter.store import SLAB_FOLDER, SNAPSHOT_FILE, RunStore, StoreError, stored_slab_file
from pyscatter.workflows.execution import Job, check_picklable, electronic_friction, execute
from pyscatter.workflows.settings import Execution


def default_out_dir(spec: RunSpec) -> Path:
    model = Path(spec.model).stem if spec.model != "emt" else "emt"
    slab = f"{spec.metal}{spec.surface}" + (f"-{Path(spec.slab).stem}" if spec.slab is not None else "")
    friction = "" if spec.friction == "none" else f"_{spec.friction}"
    return Path("runs") / (f"{spec.molecule}_v{spec.v}J{spec.J}_{slab}_{spec.temperature:g}K_{model}_seed{spec.seed}"
                           f"{friction}")


def provenance(spec: RunSpec, reference: ModelRef, model: ForceModel) -> dict:
    """Versions, seed and the model: name, identity, class (an ASE calculator's, for a wrapped one), its
    ``parameters`` where it has them (JSON-ready) and how the run loads it (:meth:`ModelRef.provenance`)."""
    described = model if model.calculator is None else model.calculator
    return {
        "pyscatter_version": pyscatter.__version__,
        "model_name": model.name,
        "model_identity": model.identity,
        "model_class": f"{type(described).__module__}.{type(described).__qualname__}",
        **({"model_parameters": json.loads(json.dumps(model.parameters, default=repr))}
           if model.parameters is not None else {}),
        **reference.provenance(),
        "torch_version": torch.__version__,
        "seed": spec.seed,
    }


Progress = Callable[[float, int, int, Tally], None]


@dataclass(frozen=True)
class Reports:
    """What a run reports as it goes: ``note(text)`` once before it starts (the slab's lattice constant and its
    source), ``progress(collision_energy, done, total, tally)`` after every commit and
    ``thermalisation(steps_done, steps_total)`` while the slab snapshots are made."""

    progress: Progress | None = None
    thermalisation: Callable[[int, int], None] | None = None
    note: Callable[[str], None] | None = None


def model_reference(spec: RunSpec, model=None, trust: bool = False, device: str = "cpu") -> ModelRef:
    """The :class:`ModelRef` of a run of ``spec``: ``spec.model`` by name (loaded with ``trust`` on ``device``), or
    ``model``: a :class:`ModelRef` of that name, or a model object the run records under that name (sent to worker
    processes pickled)."""
    if model is None:
        return ModelRef(spec.model, trust=trust, device=device)
    if isinstance(model, ModelRef):
        if model.name != spec.model:
            raise ValueError(f"model {model.name!r} is not the run's model {spec.model!r}")
        return model
    return ModelRef(spec.model, identity=model.identity, model=model, by_name=False)


def run(
    spec: RunSpec,
    collision_energies: Sequence[float],
    n_trajectories: int,
    out_dir: str | Path | None = None,
    *,
    model: ModelRef | ForceModel | None = None,
    snapshots_from: str | Path | None = None,
    on_progress: Progress | None = None,
    **options,
) -> list[dict]:
    """Run or resume every collision energy (eV) to ``n_trajectories`` trajectories; one summary dict each.

    ``model``: the run's model, default ``spec.model`` loaded by name (:func:`model_reference`; ``trust_model``: load
    a pickled model file, see :func:`pyscatter.models.load_model`; ``device``: where it is evaluated, e.g. "cuda": a
    batch is one forward pass there, worker processes share the GPU; a given model stays where it is).
    ``snapshots_from``: thermal slab snapshots (``.npz``, or a run directory holding them) to use, with their lattice constant, instead of
    making them with the model, e.g. another model's run directory's, to compare two models from identical
    initial conditions. ``on_progress(collision_energy, done, total, tally)`` is called after every commit,
    ``on_thermalisation(steps_done, steps_total)`` while the slab snapshots are made and ``on_note(text)`` once
    with the slab's lattice constant and its source.
    How the trajectories are computed: ``execution`` (an :class:`~pyscatter.workflows.settings.Execution`) or its
    fields as keywords: ``workers``, ``threads``, ``batch_size``, ``executor``, ``engine`` ("native", or "nqcd":
    NQCDynamics.jl through juliacall, one worker, no free flight, so the run records ``free_flight`` false) and
    ``last_start`` (no trajectory starts after it; those started finish and are stored, so the run ends soon after it,
    short of ``n_trajectories``, and resumes like an interrupted one; a Dask run hands out all its indices at its start).
    """
    energies = [check_collision_energy(e) for e in collision_energies]
    n_trajectories = check_trajectories(n_trajectories)
    execution = options.pop("execution", None) or Execution.from_keywords(options)
    reference = model_reference(spec, model, options.pop("trust_model", False), options.pop("device", "cpu"))
    reports = Reports(on_progress, options.pop("on_thermalisation", None), options.pop("on_note", None))
    if options:
        raise TypeError(f"run() got unexpected keyword arguments: {', '.join(sorted(options))}")
    engine = engine_named(execution.engine)
    check_friction(engine, spec.friction)
    engine.check()
    spec = dataclasses.replace(spec, free_flight=spec.free_flight and engine.free_flight)  # what it runs, recorded
    directory = Path(out_dir) if out_dir is not None else default_out_dir(spec)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(execution.threads)
    try:
        return _run(spec, energies, n_trajectories, directory, reference, execution, snapshots_from, reports)
    finally:
        torch.set_num_threads(previous_threads)


def _run(spec: RunSpec, energies: list[float], n_trajectories: int, directory: Path, reference: ModelRef,
         execution: Execution, snapshots_from: str | Path | None, reports: Reports) -> list[dict]:
    reference, model = reference.load()
    if not execution.in_process:
        check_picklable(reference)  # before anything is computed or written
    slab_file = _slab_file(spec, directory)
    as_read = None if slab_file is None else read_slab(slab_file, spec.metal, spec.surface, spec.fixed_layers)
    check_species(model, np.r_[1, atomic_numbers[spec.metal] if as_read is None else as_read.atoms.numbers])
    quantised_molecule(spec, model)  # refuses a level beyond the dissociation limit before anything is written
    given = None if snapshots_from is None else _given_snapshots(spec, snapshots_from)
    a, source = _lattice_constant(spec, model, given, directory / SNAPSHOT_FILE)
    slab = run_slab(spec, a, slab_file)
    electronic_friction(spec, a, slab_file)  # refuses a density that cannot serve before anything is written
    if reports.note is not None:
        scaled = "" if as_read is None else (f"; slab file {spec.slab} read at a = {as_read.lattice_constant:.5f} Å, "
                                              f"scaled by {a / as_read.lattice_constant:.6f}")
        reports.note(f"{spec.slab_label} slab at a = {a:.5f} Å: {source}{scaled}")
    record = {**provenance(spec, reference, model), "lattice_constant": a, "lattice_constant_source": source}
    if slab_file is not None:
        record["slab_sha256"] = file_sha256(slab_file)
    if given is not None:
        record["snapshots_from"] = given.model_identity
    with RunStore(directory, spec, record) as store:
        recorded = store.provenance["model_identity"]
        if recorded != model.identity:
            raise StoreError(f"run directory {directory} was made with model identity {recorded!r}, not "
                             f"{model.identity!r} ({spec.model}); choose another run directory")
        if slab_file is not None and stored_slab_file(directory) is None:
            (directory / SLAB_FOLDER).mkdir(exist_ok=True)
            shutil.copyfile(slab_file, directory / SLAB_FOLDER / Path(slab_file).name)
        snapshot_path = directory / SNAPSHOT_FILE
        if given is not None:
            given.save(snapshot_path)
        else:
            load_or_thermalise(snapshot_path, model, slab, spec.temperature, spec.n_snapshots, spec.seed,
                               progress=reports.thermalisation)
        job_model = reference if execution.in_process else reference.for_workers()
        summaries = []
        for energy in energies:
            cid = store.condition_id(energy)
            if store.count_done(cid, n_trajectories) < n_trajectories:
                store.set_target(cid, n_trajectories)
                job = Job(spec, energy, a, str(snapshot_path.absolute()), job_model,  # workers may start elsewhere
                          execution.batch_size or model.default_batch_size, execution.threads, execution.engine,
                          stored_slab_file(directory))
                missing = store.missing_indices(cid, n_trajectories)
                if execution.last_start is not None:
                    missing = _started_until(missing, execution.last_start)
                with _Writer(store, cid, energy, n_trajectories, reports.progress) as writer:
                    execute(job, missing, execution.workers, writer, execution.executor)
            tally = Tally(store.counts(cid, limit=n_trajectories))
            summaries.append(summary(spec, energy, tally, store.provenance))
        return summaries


def _started_until(indices: Iterator[int], last_start: float) -> Iterator[int]:
    """``indices`` as long as the clock (:data:`_now`) is before ``last_start``, read as each one is drawn."""
    for index in indices:
        if _now() >= last_start:
            return
        yield index


_now = time.time


def _slab_file(spec: RunSpec, directory: Path) -> str | None:
    """The slab file a run of ``spec`` in ``directory`` reads: none for a built slab; the run's copy once it has one
    (the user's file, where it still exists, must not have changed since); else ``spec.slab``."""
    if spec.slab is None:
        return None
    stored = stored_slab_file(directory)
    given = Path(spec.slab)
    if stored is None:
        if not given.is_file():
            raise ValueError(f"slab file {given}: no such file")
        return str(given)
    if given.is_file() and file_sha256(str(given)) != file_sha256(stored):
        raise StoreError(f"slab file {given} changed since run directory {directory} started (its copy is {stored}); "
                         "choose another run directory")
    return stored


def _lattice_constant(spec: RunSpec, model: ForceModel, given: ThermalSnapshots | None,
                      snapshot_path: Path) -> tuple[float, str]:
    """The slab's lattice constant (Å) and where it comes from: the given snapshots'; the spec's; a resumed run's,
    from the snapshots its trajectories started on (a float32 model's E(a) minimum moves by ~1e-4 Å with machine
    and threads, and a resumed run must not change its initial conditions); else the model's at the spec's
    temperature (:func:`~pyscatter.initial.surface.lattice_constant`)."""
    if given is not None:
        return given.lattice_constant, "the given thermal snapshots'"
    if spec.lattice_constant is not None:
        return spec.lattice_constant, "given"
    resumed = cached_snapshots(snapshot_path)
    if resumed is not None and (resumed.model_identity, resumed.surface, resumed.temperature, resumed.metal) == \
            (model.identity, spec.surface, spec.temperature, spec.metal):
        return resumed.lattice_constant, "the resumed run's thermal snapshots'"
    a0, expansion = lattice_constant_0K(model, spec.metal), thermal_expansion_factor(spec.temperature, spec.metal)
    return a0 * expansion, (f"the model's 0 K value {a0:.5f} Å times {spec.metal}'s thermal expansion "
                            f"a({spec.temperature:g} K)/a(0 K) = {expansion:.6f} (recommended data)")


def _given_snapshots(spec: RunSpec, path: str | Path) -> ThermalSnapshots:
    """Snapshots from another run (its snapshots file, or its run directory), checked against ``spec`` (facet,
    temperature, count, lattice constant)."""
    path = Path(path) / SNAPSHOT_FILE if Path(path).is_dir() else Path(path)
    if not path.is_file():
        raise ValueError(f"snapshots from {path}: no such file (a run directory's {SNAPSHOT_FILE})")
    snapshots = ThermalSnapshots.load(path)
    if snapshots.surface != spec.surface or snapshots.metal != spec.metal or snapshots.temperature != spec.temperature \
            or len(snapshots.positions) != spec.n_snapshots:
        raise ValueError(f"{path}: {len(snapshots.positions)} snapshots of {snapshots.metal}({snapshots.surface}) at "
                         f"{snapshots.temperature:g} K do not fit this run of {spec.n_snapshots} on "
                         f"{spec.metal}({spec.surface}) at {spec.temperature:g} K")
    if spec.lattice_constant is not None and spec.lattice_constant != snapshots.lattice_constant:
        raise ValueError(f"{path}: made at a = {snapshots.lattice_constant} Å, not {spec.lattice_constant} Å")
    return snapshots


COMMIT_INTERVAL = 1.0
"""s: finished trajectories are committed in one transaction at most this often (and at the end)."""


class _Writer:
    """The ``on_finished`` of one condition: commits in batches, reports progress per trajectory."""

    def __init__(self, store: RunStore, condition_id: int, collision_energy: float, total: int,
                 on_progress: Progress | None):
        self.store, self.cid, self.energy, self.total, self.on_progress = store, condition_id, collision_energy, total, on_progress
        self.buffer: list[TrajectoryResult] = []
        self.force_calls = 0
        self.last = time.perf_counter()
        self.tally = Tally(store.counts(condition_id, limit=total))

    def __call__(self, results: list[TrajectoryResult], force_calls: int) -> None:
        self.buffer += results
        self.force_calls += force_calls
        if time.perf_counter() - self.last >= COMMIT_INTERVAL:
            self.flush()
        elif self.on_progress is not None and results:
            self.on_progress(self.energy, self.tally.counts.n_trajectories + len(self.buffer), self.total, self.tally)

    def flush(self) -> None:
        now = time.perf_counter()
        if self.buffer or self.force_calls:
            self.store.add(self.cid, self.buffer, self.force_calls, now - self.last)
            self.buffer, self.force_calls = [], 0
            self.tally = Tally(self.store.counts(self.cid, limit=self.total))
        self.last = now
        if self.on_progress is not None:
            self.on_progress(self.energy, self.tally.counts.n_trajectories, self.total, self.tally)

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()


def summary(spec: RunSpec, collision_energy: float, tally: Tally, provenance: dict) -> dict:
    """The JSON record of one condition."""
    return {
        "metal": spec.metal,
        "surface": spec.surface,
        "T": spec.temperature,
        "v": spec.v,
        "J": spec.J,
        "molecule": spec.molecule,
        "collision_energy": collision_energy,
        **tally.as_dict(),
        "model": spec.model,
        "model_identity": provenance["model_identity"],
        "seed": spec.seed,
    }


