"""Commands ``pyscatter curve``, ``pyscatter plot``, ``pyscatter report`` and ``pyscatter mep``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pyscatter.cli.arguments import (add_condition_arguments, add_trust_argument, check_dask_arguments, collision_energy,
                                     committee_of, execution_of, integer_at_least, open_executor_of, positive_number,
                                     run_notes, run_spec)
from pyscatter.cli.tables import format_table
from pyscatter.conditions import DEFAULT_MODEL


def add_commands(commands, model_commands) -> None:
    curve = commands.add_parser("curve", help="sticking curve P_stick(E): run or resume every energy, fit, plot")
    add_condition_arguments(curve)
    curve.add_argument("--energies", type=collision_energy, nargs="+", required=True, help="collision energies, eV")
    curve.add_argument("--target-ci", type=positive_number, default=None, metavar="H",
                       help="stop each energy once the 95%% half-width of P_stick is <= H (--trajectories is the cap)")
    _add_fit_arguments(curve)
    curve.add_argument("--format", choices=("png", "svg", "pdf"), default="png", help="plot format (default png)")
    curve.set_defaults(handler=_curve)

    plot = commands.add_parser("plot", help="plot sticking curves of run directories with fits and references")
    plot.add_argument("directories", nargs="+", metavar="DIR", help="run directories, one series each")
    plot.add_argument("--out", required=True, help="figure file (.png, .svg, .pdf)")
    _add_fit_arguments(plot)
    plot.set_defaults(handler=_plot)

    report = commands.add_parser("report", help="final states and reactivity maps of a run directory")
    report.add_argument("directory", metavar="DIR")
    report.add_argument("--out-dir", default=None, help="where the tables and figures go (default DIR)")
    report.add_argument("--out", default=None, help="final-state figure file (default OUT_DIR/final_states.png)")
    report.set_defaults(handler=_report)

    mep = commands.add_parser("mep", help="CI-NEB barrier of H2 dissociation on a frozen Cu facet")
    mep.add_argument("--surface", required=True, help="Cu facet: 111, 100, 110, 211")
    mep.add_argument("--model", default=DEFAULT_MODEL, help=f"{DEFAULT_MODEL} (default), emt or a model file")
    mep.add_argument("--out", default=None, help="output directory (default runs/mep_Cu<facet>_<model>)")
    mep.add_argument("--images", type=integer_at_least(1), default=7, help="intermediate NEB images (default 7)")
    mep.add_argument("--fmax", type=positive_number, default=0.05, help="NEB force convergence, eV/Å (default 0.05)")
    mep.add_argument("--steps", type=integer_at_least(1), default=1000, help="most optimiser steps (default 1000)")
    mep.add_argument("--lattice-constant", type=positive_number, default=None, help="Å (default: the model's at 0 K)")
    add_trust_argument(mep)
    mep.set_defaults(handler=_mep)


def _add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fix-A", type=positive_number, default=None, metavar="A",
                        help="fix the saturation value A of the erf fit (default: fitted)")
    parser.add_argument("--no-fit", action="store_true", help="draw the points only")
    parser.add_argument("--reference", nargs=4, action="append", default=[], metavar=("A", "E0", "W", "LABEL"),
                        help="reference curve A/2[1+erf((E-E0)/W)] (E0, W in eV) drawn with the data; repeatable")
    parser.add_argument("--log", action="store_true", help="logarithmic P_stick axis")


def _references(args):
    from pyscatter.analysis.fitting import ReferenceCurve

    try:
        return [ReferenceCurve(float(a), float(e0), float(w), label) for a, e0, w, label in args.reference]
    except ValueError as err:
        raise ValueError(f"--reference A E0 W LABEL: {err}") from None


def _fit(curve, args):
    """(fit or None, JSON record of the fit or of why there is none)."""
    from pyscatter.analysis.fitting import FitError

    if args.no_fit:
        return None, None
    try:
        fit = curve.fit(A=args.fix_A)
    except FitError as err:
        print(f"{curve.label}: no erf fit: {err}", file=sys.stderr)
        return None, {"error": str(err)}
    return fit, fit.as_dict()


def _format_fit(label: str, fit) -> str:
    a = f"A = {fit.A:.3f} (fixed)" if fit.A_fixed else f"A = {fit.A:.3f} ± {fit.A_err:.3f}"
    model = fit.model_err("E0")
    e0 = f"{fit.E0:.4f} ± {fit.E0_err:.4f}" + ("" if model is None else f" (stat) ± {model:.4f} (model)")
    return f"{label}: erf fit {a}, E0 = {e0} eV, W = {fit.W:.4f} ± {fit.W_err:.4f} eV"


_SUMMARY_KEYS = {"n": "n_trajectories", "P_stick": "p_stick", "n_committee": "committee_trajectories",
                 "P_stick_committee_mean": "p_stick_committee_mean", "P_stick_model_sd": "p_stick_model_sd"}
"""A curve's table column -> the summary key of the same number (:func:`~pyscatter.cli.tables.format_table`)."""


def _format_curve(curve) -> str:
    return format_table([{**{_SUMMARY_KEYS.get(k, k): v for k, v in r.items()},
                          "p_stick_ci": (r["ci_low"], r["ci_high"])} for r in curve.table.to_dict(orient="records")])


def _curve(args) -> int:
    from pyscatter.analysis.sample_size import SampleSizeRule
    from pyscatter.workflows.progress import ProgressBar, thermalisation_bar
    from pyscatter.workflows.curve import run_curve
    from pyscatter.analysis.plotting import plot_sticking_curves
    from pyscatter.workflows.run import default_out_dir

    spec = run_spec(args)
    references = _references(args)
    sample_size = SampleSizeRule(args.target_ci, args.trajectories) if args.target_ci is not None else None
    check_dask_arguments(args)
    execution = execution_of(args)
    for note in run_notes(spec, args.engine):
        print(f"pyscatter: note: {note}", file=sys.stderr)
    out = Path(args.out or default_out_dir(spec))
    energies = sorted(set(args.energies))
    members = committee_of(args)
    with open_executor_of(args) as executor, ProgressBar(description="curve") as bar:
        first = sample_size.first_look if sample_size else args.trajectories
        bar.expect(dict.fromkeys(energies, first))
        bar.expect_members(members, energies, first, args.committee_trajectories)
        curve = run_curve(
            spec, energies, args.trajectories, out, sample_size, bar.member, on_progress=bar.trajectories,
            on_thermalisation=thermalisation_bar(), execution=dataclasses.replace(execution, executor=executor),
            trust_model=args.trust_model, snapshots_from=args.snapshots_from,
            committee=args.committee, committee_trajectories=args.committee_trajectories,
        )
    fit, fit_record = _fit(curve, args)
    curve.table.to_csv(out / "curve.csv", index=False)
    record = {"label": curve.label, "target_ci": args.target_ci, "rows": curve.records(), "fit": fit_record,
              "references": [vars(r) for r in references]}
    written = [out / "curve.csv", out / "curve.json"]
    if curve.committee is not None:
        curve.committee.to_csv(out / "committee.csv", index=False)
        written.append(out / "committee.csv")
        record["committee"] = curve.committee[["model", "model_identity"]].drop_duplicates().to_dict(orient="records")
    (out / "curve.json").write_text(json.dumps(record, indent=2))
    figure = plot_sticking_curves([curve], out / f"curve.{args.format}", [fit], references, log=args.log)
    print(f"run directory: {out}")
    _print_curve(curve, fit)
    print("wrote " + ", ".join(map(str, [*written, figure])))
    return 0


def _plot(args) -> int:
    from pyscatter.analysis.curves import load_results
    from pyscatter.analysis.plotting import plot_sticking_curves

    curves = [load_results(d) for d in args.directories]
    for directory, curve in zip(args.directories, curves):
        if curve.table.empty:
            raise ValueError(f"{directory} holds no finished trajectories")
    fits = [_fit(curve, args)[0] for curve in curves]
    figure = plot_sticking_curves(curves, args.out, fits, _references(args), log=args.log)
    for curve, fit in zip(curves, fits):
        print(f"{curve.directory}: {curve.label}")
        _print_curve(curve, fit)
    print(f"wrote {figure}")
    return 0


def _print_curve(curve, fit) -> None:
    print(_format_curve(curve))
    if fit is not None:
        print(_format_fit(curve.label, fit))


def _report(args) -> int:
    from pyscatter.analysis.finalstate import (
        final_state_summary,
        populations,
        scattered_molecules,
    )
    from pyscatter.analysis.plotting import plot_final_states

    directory = Path(args.directory)
    molecules = scattered_molecules(directory)  # refuses what is not a run directory before anything is written
    out = Path(args.out_dir or directory)
    out.mkdir(parents=True, exist_ok=True)
    summary = final_state_summary(molecules)
    pop_v, pop_J = populations(molecules, "v_bin"), populations(molecules, "J_bin")
    summary.to_csv(out / "final_states.csv", index=False)
    pop_v.to_csv(out / "final_states_v.csv")
    pop_J.to_csv(out / "final_states_J.csv")
    print(f"{molecules.attrs['label']}: final states of the scattered molecules")
    print(f"{'E (eV)':>7} {'N':>6} {'scat':>5} {'P(v′>v)':>8} {'P(v′<v)':>8} {'<E′_tr> (eV)':>12} {'<E-E′_tr> (eV)':>15}")
    for r in summary.itertuples():
        print(f"{r.collision_energy:7.3f} {r.n:6d} {r.n_scattered:5d} {r.P_vib_excitation:8.3f} "
              f"{r.P_vib_deexcitation:8.3f} {r.mean_E_trans_final:12.4f} {r.mean_E_trans_loss:10.4f} ± {r.mean_E_trans_loss_err:.4f}")
    if not pop_v.empty:
        print("v′ populations (fraction of scattered):\n" + pop_v.round(3).to_string())
    written = [out / "final_states.csv", out / "final_states_v.csv", out / "final_states_J.csv"]
    if molecules.empty:
        print("no scattered molecules: no final-state figure")
    else:
        written.append(plot_final_states(molecules, summary, pop_v, pop_J, args.out or out / "final_states.png"))
    written += _reactivity(directory, out)
    print("wrote " + ", ".join(map(str, written)))
    return 0


def _reactivity(directory: Path, out: Path) -> list[Path]:
    """P_stick by impact site and orientation: ``reactivity_sites.csv``, ``reactivity_orientation.csv``,
    ``reactivity_map.png`` in ``out``."""
    from pyscatter.analysis.curves import load_results
    from pyscatter.analysis.plotting import plot_reactivity
    from pyscatter.analysis.reactivity import orientation_reactivity, site_reactivity
    from pyscatter.initial.sites import SITE_CLASSES, surface_sites
    from pyscatter.initial.surface import run_slab

    results = load_results(directory)
    table = results.trajectories
    if table.attrs["surface"] not in SITE_CLASSES:
        print(f"no impact-site classes for a slab of facet {table.attrs['surface']!r}: no reactivity map")
        return []
    by_site = site_reactivity(table)
    by_site.to_csv(out / "reactivity_sites.csv", index=False)
    orientation_reactivity(table).to_csv(out / "reactivity_orientation.csv", index=False)
    print("P_stick by impact site (95% CI):")
    for r in by_site.itertuples():
        print(f"{r.collision_energy:7.3f} {r.site:>13} {r.n:6d} {r.P_stick:8.4f} [{r.ci_low:7.4f}, {r.ci_high:7.4f}]")
    sites = surface_sites(run_slab(results.spec, table.attrs["lattice_constant"], table.attrs["slab_file"]))
    return [out / "reactivity_sites.csv", out / "reactivity_orientation.csv",
            plot_reactivity(table, sites, out / "reactivity_map.png")]


def _mep(args) -> int:
    from pyscatter.mep import dissociation_path
    from pyscatter.models import load_model
    from pyscatter.analysis.plotting import plot_mep

    model = load_model(args.model, trust=args.trust_model)
    name = Path(args.model).stem
    out = Path(args.out or Path("runs") / f"mep_Cu{args.surface}_{name}")
    path = dissociation_path(model, args.surface, args.lattice_constant, args.images, args.fmax, args.steps, name)
    written = [*path.write(out), plot_mep(path, out / "mep.png")]
    state = "converged" if path.converged else f"NOT converged to fmax {args.fmax} eV/Å in {args.steps} steps"
    print(f"H2 -> 2H on Cu({args.surface}), {name}: barrier {path.barrier:.4f} eV, "
          f"reaction energy {path.reaction_energy:.4f} eV (CI-NEB, {len(path.images)} images, {state})")
    print("wrote " + ", ".join(map(str, written)))
    return 0 if path.converged else 1
