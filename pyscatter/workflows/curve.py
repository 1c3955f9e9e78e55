"""A sticking curve P_stick(E): run or resume one run directory at several collision energies (eV).

Each energy is one condition of the run directory, so ``pyscatter run``, ``pyscatter curve`` and
:func:`sticking_curve` share and resume the same results. With a
:class:`~pyscatter.analysis.sample_size.SampleSizeRule` each energy runs until its 95 % Wilson half-width
reaches a target. With a model committee (:mod:`pyscatter.workflows.committee`) its members then run the same
trajectory indices, and the curve carries the model uncertainty beside the statistical one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pyscatter.analysis.curves import StickingCurve, curve_from_store
from pyscatter.analysis.sample_size import SampleSizeRule
from pyscatter.conditions import RunSpec, Termination, check_collision_energy, check_trajectories
from pyscatter.models import DEFAULT_MODEL
from pyscatter.store import RunReader

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from pyscatter.models.base import ForceModel


def run_curve(
    spec: RunSpec,
    energies: Sequence[float],
    trajectories: int,
    out: str | Path | None = None,
    sample_size: SampleSizeRule | None = None,
    on_progress=None,
    committee: Sequence[str] = (),
    committee_trajectories: int | None = None,
    on_member_progress=None,
    **execution,
) -> StickingCurve:
    """Run or resume ``spec`` at every collision energy (eV) and return the curve.

    ``trajectories`` per energy, or with a ``sample_size`` rule each energy runs until its
    target half-width (its cap replaces ``trajectories``; see :mod:`pyscatter.analysis.sample_size`). ``on_progress`` and ``execution`` (workers,
    batch_size, threads, executor, snapshots_from, model: a model object ``spec.model`` names) are passed to
    :func:`pyscatter.workflows.run.run`. ``committee``: models whose runs of the first ``committee_trajectories`` (default:
    all) trajectories of each energy give the model uncertainty (:func:`~pyscatter.workflows.committee.run_committee`,
    with ``on_member_progress`` as its ``on_progress``).
    """
    from pyscatter.models import load_model
    from pyscatter.workflows.committee import expand_committee, run_committee
    from pyscatter.workflows.run import default_out_dir, run

    if committee:
        expand_committee(committee, execution.get("trust_model", False))  # refused before anything runs
    if committee_trajectories is not None:
        check_trajectories(committee_trajectories)

    energies = sorted({check_collision_energy(e) for e in energies})
    directory = Path(out) if out is not None else default_out_dir(spec)
    model = execution.pop("model", None) or load_model(spec.model, trust=execution.get("trust_model", False))
    options = dict(out_dir=directory, on_progress=on_progress, model=model, **execution)
    if sample_size is None:
        run(spec, energies, trajectories, **options)
        limits = dict.fromkeys(energies, trajectories)
    else:
        limits = dict.fromkeys(energies, sample_size.first_look)
        pending = dict(limits)
        while pending:  # one round: every pending energy up to its next look, equal looks in one call
            looks = dict(pending)
            for n in sorted(set(looks.values())):
                for record in run(spec, [e for e, m in looks.items() if m == n], n, **options):
                    energy = record["collision_energy"]
                    limits[energy] = n
                    look = sample_size.next_look(n, record["n_dissociated"])
                    if look is None:
                        del pending[energy]
                    else:
                        pending[energy] = look
    if committee:
        run_committee(spec, committee, limits, directory, committee_trajectories, on_progress=on_member_progress,
                      **{k: v for k, v in execution.items() if k != "snapshots_from"})
    with RunReader(directory) as store:
        return curve_from_store(store, limits, committee_trajectories)


def sticking_curve(
    surface: str = "111",
    T: float = 925.0,
    v: int = 1,
    J: int = 1,
    energies: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.75),
    model: "str | ForceModel | Calculator" = DEFAULT_MODEL,
    trajectories: int = 10000,
    molecule: str = "H2",
    out: str | Path | None = None,
    target_ci: float | None = None,
    workers: int = 1,
    progress: bool = False,
    snapshots_from: str | Path | None = None,
    committee: Sequence[str] = (),
    committee_trajectories: int | None = None,
    **spec_options,
) -> StickingCurve:
    """P_stick(E) of ``molecule`` (v, J) on Cu(``surface``) at ``T`` K, collision energies in eV.

    Runs or resumes every energy in ``out`` (default ``runs/<condition>``), the same store that
    ``pyscatter run`` uses. ``model``: a shipped model's name (default the H2/Cu ACE surrogate), "emt", a model
    file, an ASE calculator or a :class:`~pyscatter.models.base.ForceModel` object (see
    :func:`pyscatter.models.model_object`: the run records it as e.g. ``ase:EMT``, with its class and parameters in
    the provenance; ``workers`` > 1 sends it to the worker processes pickled, and refuses if it does not pickle).
    ``trajectories`` per energy (the cap with ``target_ci``, the 95 % half-width of P_stick at which an energy
    stops). ``snapshots_from``: another run's thermal snapshots file to start from (identical initial conditions
    across models). ``committee``: model names or files (an ACE committee file stands for its members) run on the
    same trajectories, the first ``committee_trajectories`` per energy (default all; K members cost K runs of them):
    the curve's table then has the committee mean and ``P_stick_model_sd`` beside the main ``model``'s P_stick and
    Wilson interval, ``curve.committee`` each member's P_stick, and ``curve.fit()`` E0's model error
    (:mod:`pyscatter.analysis.committee`). ``spec_options``: further :class:`RunSpec` and :class:`Termination` fields (seed, dt fs,
    n_snapshots, max_time fs, ...). ``progress``: a bar on stderr.
    """
    from pyscatter.models import model_object

    name, obj = (model, None) if isinstance(model, str) else model_object(model)
    ends = {f.name for f in dataclasses.fields(Termination)}
    termination = Termination(**{k: spec_options.pop(k) for k in list(spec_options) if k in ends})
    spec = RunSpec(surface=surface, temperature=T, v=v, J=J, molecule=molecule, model=name, termination=termination,
                   **spec_options)
    sample_size = SampleSizeRule(target_ci, trajectories) if target_ci is not None else None
    options = dict(out=out, sample_size=sample_size, workers=workers, model=obj, snapshots_from=snapshots_from,
                   committee=committee, committee_trajectories=committee_trajectories)
    if not progress:
        return run_curve(spec, energies, trajectories, **options)
    from pyscatter.cli.progress import ProgressBar
    from pyscatter.workflows.committee import expand_committee

    members = expand_committee(committee) if committee else []
    with ProgressBar(description="curve") as bar:
        first = sample_size.first_look if sample_size else trajectories
        bar.expect(dict.fromkeys(energies, first))
        bar.expect_members(members, energies, first, committee_trajectories)
        return run_curve(spec, energies, trajectories, on_progress=bar.trajectories, on_member_progress=bar.member,
                         **options)
