"""Committee runs: the main run's trajectories again with each member of a model committee.

Each member is a sub-run of the run directory, ``DIR/committee/<name>-<digest>/`` (an ordinary run directory:
the same transactional store, resume and interruption safety as ``pyscatter run``), keyed by the member's
name and model identity (file sha256), so a member keeps its trajectories whatever committee it is listed in
and however the list is reordered. Members start from the main run's thermal snapshots and lattice constant,
with the main run's seed: trajectory i of every member draws the same slab snapshot, impact point, bond
orientation and vibrational phase (the molecule's EBK level is each member's own). The main store records
the committee last run (:attr:`pyscatter.store.RunReader.committee`), which the analysis reads
(:mod:`pyscatter.analysis.committee`).

Cost: members share nothing but the initial conditions (each member's dynamics diverge), so K members cost K
runs of ``committee_trajectories`` trajectories per energy (default: as many as the main model's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from pyscatter.conditions import RunSpec
from pyscatter.initial.sampler import quantised_molecule
from pyscatter.models import ModelRef, committee_members
from pyscatter.models.files import check_trusted
from pyscatter.store import SNAPSHOT_FILE, RunReader, RunStore
from pyscatter.workflows.run import Progress, run

COMMITTEE_DIRECTORY = "committee"
"""Sub-directory of a run directory that holds its committee members' runs."""


def expand_committee(committee: Sequence[str], trust_model: bool = False) -> list[str]:
    """The member models of ``--committee`` arguments (committee files expanded by
    :func:`~pyscatter.models.committee_members`); ValueError for fewer than 2 or a member given twice, ModelError for
    a pickled member file not trusted (``trust_model``; checked before anything runs, the payload never runs)."""
    members = [member for spec in committee for member in committee_members(spec)]
    for member in members:
        check_trusted(member, trust_model)
    if len(members) < 2:
        raise ValueError(f"a committee needs at least 2 members, got {members}")
    repeated = sorted({m for m in members if members.count(m) > 1})
    if repeated:
        raise ValueError(f"committee member(s) {repeated} given twice")
    return members


def shared_trajectories(n: int, committee_trajectories: int | None) -> int:
    """Trajectories the members run of the main model's ``n``: the first ``committee_trajectories`` (None: all)."""
    return n if committee_trajectories is None else min(n, committee_trajectories)


def member_directory(model: str, identity: str) -> str:
    """A member's sub-run, relative to the run directory: its file name (sanitised) and a digest of (name, identity)."""
    digest = hashlib.sha256(f"{model}\n{identity}".encode()).hexdigest()[:12]
    return f"{COMMITTEE_DIRECTORY}/{re.sub(r'[^A-Za-z0-9_.-]', '_', Path(model).name)[:40]}-{digest}"


def run_committee(
    spec: RunSpec,
    committee: Sequence[str],
    trajectories: dict[float, int],
    out_dir: str | Path,
    committee_trajectories: int | None = None,
    trust_model: bool = False,
    on_progress: Callable[[str], Progress] | None = None,
    **execution,
) -> list[dict]:
    """Run or resume every member of ``committee`` (model names or files, :func:`expand_committee`) on the first
    ``committee_trajectories`` (None: all) of the main model's ``trajectories[E]`` of each collision energy E (eV) of
    the existing run directory ``out_dir``, and record the committee there; returns the record
    (:attr:`~pyscatter.store.RunReader.committee`).

    ``on_progress(model)`` gives the progress callback of a member's run; ``execution`` (an ``execution``
    :class:`~pyscatter.workflows.settings.Execution` or its fields, ``on_thermalisation``) goes to
    :func:`~pyscatter.workflows.run.run`.
    """
    directory = Path(out_dir)
    references = {m: ModelRef(m, trust=trust_model).load() for m in expand_committee(committee, trust_model)}
    models = {m: model for m, (_, model) in references.items()}
    identities = [model.identity for model in models.values()]
    if len(set(identities)) < len(identities):
        raise ValueError(f"committee members {list(models)} are not all different models (identities {identities})")
    for m, model in models.items():  # every member's molecule quantised before any member runs
        try:
            quantised_molecule(spec, model)
        except ValueError as err:
            raise ValueError(f"committee member {m}: {err}") from None
    record = [{"model": m, "model_identity": model.identity, "directory": member_directory(m, model.identity)}
              for m, model in models.items()]
    with RunReader(directory) as main:  # refuses a directory without the main run
        provenance = main.provenance
    with RunStore(directory, spec, provenance) as store:
        store.set_committee(record)
    shared = {e: shared_trajectories(n, committee_trajectories) for e, n in trajectories.items()}
    for member in record:
        member_spec = dataclasses.replace(spec, model=member["model"])
        for n in sorted(set(shared.values())):
            run(member_spec, [e for e, m in shared.items() if m == n], n, directory / member["directory"],
                model=references[member["model"]][0], snapshots_from=directory / SNAPSHOT_FILE,
                on_progress=on_progress(member["model"]) if on_progress else None, **execution)
    return record
