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
from pyscatter.workflows.settings import Execution

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from pyscatter.models.base import ForceModel


def run_curve(
    spec: RunSpec,
    energies: Sequence[float],
    trajectories: int,
    out: str | Path | None = None,
    sample_size: SampleSizeRule | None = None,
    on_member_progress=None,
    **options,
) -> StickingCurve:
    """Run or resume ``spec`` at every collision energy (eV) and return the curve.

    ``trajectories`` per energy, or with a ``sample_size`` rule each energy runs until its
    target half-width (its cap replaces ``trajectories``; see :mod:`pyscatter.analysis.sample_size`).
    ``options``: ``committee``, models whose runs of the first ``committee_trajectories`` (default: all) trajectories
    of each energy give the model uncertainty (:func:`~pyscatter.workflows.committee.run_committee`, with
    ``on_member_progress`` as its ``on_progress``); the rest (``model``, ``trust_model``, ``device``, ``on_progress``,
    ``on_thermalisation``, ``snapshots_from`` and the execution settings) go to :func:`pyscatter.workflows.run.run`.
    """
    from pyscatter.workflows.committee import expand_committee, run_committee
    from pyscatter.workflows.run import default_out_dir, model_reference, run

    committee, committee_trajectories = options.pop("committee", ()), options.pop("committee_trajectories", None)
    if committee:
        expand_committee(committee, options.get("trust_model", False))  # refused before anything runs
    if committee_trajectories is not None:
        check_trajectories(committee_trajectories)

    energies = sorted({check_collision_energy(e) for e in energies})
    directory = Path(out) if out is not None else default_out_dir(spec)
    reference = model_reference(spec, options.pop("model", None), options.pop("trust_model", False),
                                options.pop("device", "cpu"))
    execution = options.pop("execution", None) or Execution.from_keywords(options)
    options.update(model=reference.load()[0], execution=execution)  # loaded once for every call of run
    if sample_size is None:
        run(spec, energies, trajectories, directory, **options)
        limits = dict.fromkeys(energies, trajectories)
    else:
        limits = dict.fromkeys(energies, sample_size.first_look)
        pending = dict(limits)
        while pending:  # one round: every pending energy up to its next look, equal looks in one call
            looks = dict(pending)
            for n in sorted(set(looks.values())):
                for record in run(spec, [e for e, m in looks.items() if m == n], n, directory, **options):
                    energy = record["collision_energy"]
                    limits[energy] = n
                    look = sample_size.next_look(n, record["n_dissociated"])
                    if look is None:
                        del pending[energy]
                    else:
                        pending[energy] = look
    if committee:
        run_committee(spec, committee, limits, directory, committee_trajectories, reference.trust, on_member_progress,
                      execution=execution, on_thermalisation=options.get("on_thermalisation"))
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
    **options,
) -> StickingCurve:
    """P_stick(E) of ``molecule`` (v, J) on Cu(``surface``) at ``T`` K, collision energies in eV.

    Runs or resumes every energy in ``out`` (default ``runs/<condition>``), the same store that
    ``pyscatter run`` uses. ``model``: a shipped model's name (default the H2/Cu ACE surrogate), "emt", a model
    file, an ASE calculator or a :class:`~pyscatter.models.base.ForceModel` object (see
    :func:`pyscatter.models.model_object`: the run records it as e.g. ``ase:EMT``, with its class and parameters in
    the provenance; ``workers`` > 1 sends it to the worker processes pickled, and refuses if it does not pickle).
    ``trajectories`` per energy (the cap with ``target_ci``, the 95 % half-width of P_stick at which an energy
    stops).

    Keywords (``options``): ``molecule`` ("H2"), ``out``, ``target_ci``, ``workers`` (1), ``progress`` (False: with
    True a bar on stderr), ``snapshots_from`` (another run's thermal snapshots file to start from: identical initial
    conditions across models), ``committee`` (model names or files; an ACE committee file stands for its members)
    run on the same trajectories, the first ``committee_trajectories`` per energy (default all; K members cost K runs
    of them): the curve's table then has the committee mean and ``P_stick_model_sd`` beside the main ``model``'s
    P_stick and Wilson interval, ``curve.committee`` each member's P_stick, and ``curve.fit()`` E0's model error
    (:mod:`pyscatter.analysis.committee`); and further :class:`RunSpec` and :class:`Termination` fields (seed, dt fs,
    n_snapshots, max_time fs, ...).
    """
    from pyscatter.models import ModelRef

    curve_keys = ("out", "workers", "snapshots_from", "committee", "committee_trajectories")
    curve_options = {k: options.pop(k) for k in curve_keys if k in options}
    target_ci, progress = options.pop("target_ci", None), options.pop("progress", False)
    reference = ModelRef(model) if isinstance(model, str) else ModelRef.given(model)
    ends = {f.name for f in dataclasses.fields(Termination)}
    termination = Termination(**{k: options.pop(k) for k in list(options) if k in ends})
    spec = RunSpec(surface=surface, temperature=T, v=v, J=J, model=reference.name, termination=termination, **options)
    sample_size = SampleSizeRule(target_ci, trajectories) if target_ci is not None else None
    curve_options.update(model=reference, sample_size=sample_size)
    if not progress:
        return run_curve(spec, energies, trajectories, **curve_options)
    from pyscatter.workflows.committee import expand_committee
    from pyscatter.workflows.progress import ProgressBar

    members = expand_committee(curve_options.get("committee", ()))
    with ProgressBar(description="curve") as bar:
        first = sample_size.first_look if sample_size else trajectories
        bar.expect(dict.fromkeys(energies, first))
        bar.expect_members(members, energies, first, curve_options.get("committee_trajectories"))
        return run_curve(spec, energies, trajectories, on_progress=bar.trajectories, on_member_progress=bar.member,
                         **curve_options)
