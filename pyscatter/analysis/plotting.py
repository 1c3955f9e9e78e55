"""Figures (matplotlib, no display needed): sticking curves, final-state distributions, minimum energy paths.

Every function writes one file whose format follows its suffix (.png, .svg, .pdf) and draws on a
bare :class:`~matplotlib.figure.Figure`, so no GUI backend is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pyscatter.analysis.fitting import ErfFit, ReferenceCurve

if TYPE_CHECKING:  # curves draw themselves with this module (StickingCurve.plot)
    from pyscatter.analysis.curves import StickingCurve

_SERIES_FIELDS = (
    ("molecule", "{}"), ("v", "v={}"), ("J", "J={}"), ("slab_label", "{}"), ("temperature", "{:g} K"), ("model", "model {}"),
)


def _field(curve: StickingCurve, name: str):
    value = getattr(curve.spec, name)
    return Path(value).stem if name == "model" else value


def series_labels(curves: Sequence[StickingCurve]) -> tuple[list[str], str]:
    """A legend label per curve from the settings that differ between curves, and a title from those shared."""
    varying, shared = [], []
    for name, fmt in _SERIES_FIELDS:
        values = {_field(c, name) for c in curves}
        (varying if len(values) > 1 else shared).append((name, fmt))
    varying = varying or shared
    labels = [", ".join(fmt.format(_field(c, name)) for name, fmt in varying) for c in curves]
    title = ", ".join(fmt.format(_field(curves[0], name)) for name, fmt in shared if (name, fmt) not in varying)
    return labels, title


def plot_sticking_curves(
    curves: Sequence[StickingCurve],
    out: str | Path,
    fits: Sequence[ErfFit | None] | None = None,
    references: Sequence[ReferenceCurve] = (),
    log: bool = False,
) -> Path:
    """Write :func:`sticking_curve_figure` to ``out``."""
    sticking_curve_figure(curves, fits, references, log).savefig(out, dpi=150)
    return Path(out)


def sticking_curve_figure(
    curves: Sequence[StickingCurve],
    fits: Sequence[ErfFit | None] | None = None,
    references: Sequence[ReferenceCurve] = (),
    log: bool = False,
) -> Figure:
    """P_stick vs collision energy (eV) with 95 % Wilson error bars, one series per curve, its erf fit
    (line of the same colour) when given, and reference curves (black, dashed styles). A curve with a model
    committee gets a second bar beside each point: ± the committee's P_stick standard deviation (thick, pale,
    capless), with its own legend entry."""
    fits = list(fits) if fits is not None else [None] * len(curves)
    labels, title = series_labels(curves) if len(curves) > 1 else (["simulated"], curves[0].label)
    fig = Figure(figsize=(7.5, 6.0), layout="constrained")
    ax = fig.add_subplot()
    energies = np.concatenate([c.table["collision_energy"].to_numpy() for c in curves] or [np.zeros(1)])
    lo, hi = energies.min(), energies.max()
    grid = np.linspace(max(0.0, lo - 0.1 * (hi - lo + 0.1)), hi + 0.1 * (hi - lo + 0.1), 300)
    dodge = 0.008 * (hi - lo + 0.1)  # the model bar's offset from its point's Wilson bar
    entries = []  # legend order: each series' points then its fit, then the references
    for i, (curve, fit, label) in enumerate(zip(curves, fits, labels)):
        colour = f"C{i % 10}"
        t = curve.table
        p = t["P_stick"].to_numpy()
        yerr = np.vstack([p - t["ci_low"].to_numpy(), t["ci_high"].to_numpy() - p])
        n = f"N={t['n'].min()}" if t["n"].nunique() == 1 else f"N={t['n'].min()}–{t['n'].max()}"
        marker = "osD^v<>p"[i % 8]
        entries.append((ax.errorbar(t["collision_energy"], p, yerr=yerr, fmt=marker, color=colour, capsize=3, ms=5),
                        f"{label} ({n} per energy, 95% CI)"))
        if curve.committee is not None:
            k = curve.committee["member"].nunique()
            entries.append((ax.errorbar(t["collision_energy"] + dodge, p, yerr=t["P_stick_model_sd"], fmt="none",
                                        ecolor=colour, elinewidth=5, alpha=0.4, capsize=0),
                            f"{label}: ±1 sd between models (committee of {k})"))
        if fit is not None:
            a = f"A={fit.A:.2f} (fixed)" if fit.A_fixed else f"A={fit.A:.2f}±{fit.A_err:.2f}"
            e0_model = fit.model_err("E0")
            e0 = f"{fit.E0:.3f}±{fit.E0_err:.3f}" + ("" if e0_model is None else f" (stat)±{e0_model:.3f} (model)")
            entries.append((ax.plot(grid, fit(grid), "-", color=colour)[0],
                            f"erf fit: {a}, E0={e0} eV, W={fit.W:.3f}±{fit.W_err:.3f} eV"))
    for reference, style in zip(references, ["--", ":", "-.", (0, (5, 1, 1, 1))] * 4):
        entries.append((ax.plot(grid, reference(grid), linestyle=style, color="0.15")[0],
                        f"{reference.label} (A={reference.A:g}, E0={reference.E0:g} eV, W={reference.W:g} eV)"))
    ax.set_xlabel("collision energy $E$ (eV)")
    ax.set_ylabel("dissociative sticking probability $P_\\mathrm{stick}$")
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(grid[0], grid[-1])
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=11)
    fig.legend(*zip(*entries), fontsize=8, loc="outside lower center")
    return fig


def plot_final_states(molecules: pd.DataFrame, summary: pd.DataFrame, populations_v: pd.DataFrame,
                      populations_J: pd.DataFrame, out: str | Path) -> Path:
    """Four panels: v′ populations, J′ populations, vibrational (de-)excitation probabilities and the mean
    translational energy loss vs collision energy, all for the scattered molecules."""
    fig = Figure(figsize=(11, 8), layout="constrained")
    (a_v, a_j), (a_p, a_e) = fig.subplots(2, 2)
    energies = list(populations_v.index)
    width = 0.8 / max(len(energies), 1)
    for i, energy in enumerate(energies):
        row = populations_v.loc[energy]
        a_v.bar(row.index + (i - (len(energies) - 1) / 2) * width, row.to_numpy(), width=width, color=f"C{i % 10}",
                label=f"E = {energy:g} eV ({int(summary.set_index('collision_energy').loc[energy, 'n_scattered'])} scattered)")
    for i, energy in enumerate(populations_J.index):
        row = populations_J.loc[energy]
        a_j.plot(row.index, row.to_numpy(), "o-", color=f"C{i % 10}", label=f"E = {energy:g} eV")
    a_v.set_xlabel("final vibrational state $v'$")
    a_v.set_ylabel("fraction of scattered molecules")
    a_v.set_xticks(sorted({int(v) for v in populations_v.columns}) or [0])
    a_j.set_xlabel("final rotational state $J'$")
    a_j.set_ylabel("fraction of scattered molecules")
    for ax in (a_v, a_j):
        ax.legend(fontsize=8)
    e = summary["collision_energy"].to_numpy()
    dodge = 0.006 * (np.ptp(e) if len(e) > 1 else 1.0)  # keeps the two series' error bars apart
    for column, marker, label, shift in (("P_vib_excitation", "^", "excitation ($v'>v$)", -dodge),
                                         ("P_vib_deexcitation", "v", "de-excitation ($v'<v$)", dodge)):
        p = summary[column].to_numpy()
        ci = np.array([list(c) for c in summary[f"{column}_ci"]]).reshape(-1, 2)
        a_p.errorbar(e + shift, p, yerr=np.vstack([p - ci[:, 0], ci[:, 1] - p]), fmt=marker, capsize=3, label=f"{label}, 95% CI")
    a_p.set_xlabel("collision energy $E$ (eV)")
    a_p.set_ylabel("probability per scattered molecule")
    a_p.set_ylim(-0.02, 1.02)
    a_p.legend(fontsize=8)
    a_e.errorbar(e, summary["mean_E_trans_loss"], yerr=summary["mean_E_trans_loss_err"], fmt="o", capsize=3,
                 label=r"$\langle E - E'_\mathrm{trans}\rangle$ ± standard error")
    a_e.axhline(0.0, color="0.5", lw=0.8)
    a_e.set_xlabel("collision energy $E$ (eV)")
    a_e.set_ylabel("mean translational energy loss (eV)")
    a_e.legend(fontsize=8)
    for ax in (a_v, a_j, a_p, a_e):
        ax.grid(alpha=0.3)
    fig.suptitle(f"Scattered {molecules.attrs.get('label', '')}: final states", fontsize=12)
    fig.savefig(out, dpi=150)
    return Path(out)


def plot_mep(mep, out: str | Path) -> Path:
    """Energy along the CI-NEB path (images and ASE's force-consistent spline) above the H–H distance and the
    molecule's height along it; ``mep`` is a :class:`~pyscatter.mep.MinimumEnergyPath`."""
    fig = Figure(figsize=(7, 6.5), layout="constrained")
    a_e, a_g = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    a_e.plot(mep.fit_path, mep.fit_energies, "-", color="C0", label="spline through images (uses forces)")
    a_e.plot(mep.path, mep.energies, "o", color="C0", label=f"NEB images ({len(mep.images)})")
    top = int(np.argmax(mep.energies))
    a_e.plot(mep.path[top], mep.energies[top], "*", color="C3", ms=14,
             label=f"highest image: barrier {mep.barrier:.3f} eV")
    a_e.axhline(0.0, color="0.5", lw=0.8)
    a_e.set_ylabel("energy relative to gas-phase H$_2$ (eV)")
    state = "converged" if mep.converged else "NOT converged"
    a_e.set_title(f"H$_2$ → 2H on Cu({mep.surface}), {mep.model}: CI-NEB ({state}, fmax {mep.fmax:g} eV/Å); "
                  f"reaction energy {mep.reaction_energy:.3f} eV", fontsize=10)
    a_e.legend(fontsize=8)
    a_g.plot(mep.path, mep.hh_distance, "o-", color="C1", label="H–H distance $r$")
    a_g.plot(mep.path, mep.height, "s-", color="C2", label="centre-of-mass height $Z$ above the top layer")
    a_g.set_xlabel("reaction coordinate (cumulative image distance, Å)")
    a_g.set_ylabel("Å")
    a_g.legend(fontsize=8)
    for ax in (a_e, a_g):
        ax.grid(alpha=0.3)
    fig.savefig(out, dpi=150)
    return Path(out)


def plot_reactivity(table: pd.DataFrame, sites, out: str | Path) -> Path:
    """Reactivity of the trajectories of ``table`` (:func:`pyscatter.analysis.trajectories.trajectory_table`):
    per collision energy, P_stick over the primitive surface cell (binned impact points, empty bins blank, top-
    layer atoms as red circles); below, P_stick by site class and against
    the bond's polar orientation, with 95 % Wilson intervals. ``sites``: the facet's
    :class:`~pyscatter.initial.sites.SurfaceSites`."""
    from pyscatter.analysis.reactivity import impact_map, orientation_reactivity, site_reactivity
    from pyscatter.initial.sites import PRIMITIVE_REPEATS

    energies = sorted(table.loc[table["counted"], "collision_energy"].unique())
    by_site, by_angle = site_reactivity(table), orientation_reactivity(table)
    fig = Figure(figsize=(max(7.0, 2.6 * len(energies) + 1.0), 6.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.1, 1.0))
    maps = np.atleast_1d(top.subplots(1, max(len(energies), 1)))
    primitive = sites.cell / np.array(PRIMITIVE_REPEATS[sites.surface])[:, None]
    image = None
    for ax, energy in zip(maps, energies):
        total, hits = impact_map(table, energy, sites.cell)
        p = np.ma.masked_where(total == 0, hits / np.maximum(total, 1))
        u, v = np.meshgrid(np.linspace(0, 1, total.shape[0] + 1), np.linspace(0, 1, total.shape[1] + 1), indexing="ij")
        xy = np.stack([u, v], -1) @ primitive
        image = ax.pcolormesh(xy[..., 0], xy[..., 1], p, vmin=0.0, vmax=1.0, cmap="viridis")
        drawn = _images_in_cell(sites.top_atoms, sites.cell, primitive)
        ax.scatter(drawn[:, 0], drawn[:, 1], s=200, facecolors="none", edgecolors="tab:red", linewidths=1.5, clip_on=False)
        corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]) @ primitive
        ax.plot(corners[:, 0], corners[:, 1], color="0.3", lw=0.8)
        ax.set_aspect("equal")
        ax.set_title(f"E = {energy:g} eV (N = {int(total.sum())})", fontsize=9)
        ax.set_xlabel("x (Å)")
    if len(energies):
        maps[0].set_ylabel("y (Å)")
        top.colorbar(image, ax=list(maps), label="$P_\\mathrm{stick}$", shrink=0.9)
    top.suptitle(f"{sites.metal}({sites.surface}): P_stick over the primitive surface cell "
                 "(top-layer atoms: red circles)", fontsize=10)
    a_site, a_angle = bottom.subplots(1, 2)
    classes = list(dict.fromkeys(by_site["site"]))
    width = 0.8 / max(len(energies), 1)
    for i, energy in enumerate(energies):
        rows = by_site[by_site["collision_energy"] == energy]
        x = np.arange(len(classes)) + (i - (len(energies) - 1) / 2) * width
        p = rows["P_stick"].to_numpy()
        a_site.bar(x, np.nan_to_num(p), width=width, color=f"C{i % 10}", label=f"{energy:g} eV",
                   yerr=np.vstack([p - rows["ci_low"], rows["ci_high"] - p]), capsize=2)
        rows = by_angle[by_angle["collision_energy"] == energy]
        mid = (rows["bin_low"] + rows["bin_high"]).to_numpy() / 2
        p = rows["P_stick"].to_numpy()
        a_angle.errorbar(mid, p, yerr=np.vstack([p - rows["ci_low"], rows["ci_high"] - p]), fmt="o-", capsize=3,
                         color=f"C{i % 10}", label=f"{energy:g} eV")
    a_site.set_xticks(range(len(classes)), classes, fontsize=8)
    a_site.set_ylabel("$P_\\mathrm{stick}$ (95% CI)")
    a_site.set_title("by impact site", fontsize=9)
    quantity = by_angle["quantity"].iloc[0] if len(by_angle) else "|cos theta|"
    a_angle.set_xlabel(quantity.replace("cos theta", "cos θ") + " of the bond (1: normal to the surface)")
    a_angle.set_title("by polar orientation", fontsize=9)
    for ax in (a_site, a_angle):
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(out, dpi=110)
    return Path(out)


def _images_in_cell(xy: np.ndarray, cell: np.ndarray, primitive: np.ndarray, margin: float = 0.02) -> np.ndarray:
    """Periodic images (Å) of lateral points ``xy`` that fall in the primitive cell (with a fractional margin)."""
    shifts = np.array([(i, j) for i in range(-3, 4) for j in range(-3, 4)]) @ cell
    images = (xy[:, None, :] + shifts[None]).reshape(-1, 2)
    frac = images @ np.linalg.inv(primitive)
    inside = ((frac > -margin) & (frac < 1 + margin)).all(axis=1)
    return images[inside]


def plot_validation(record: dict, out: str | Path, reference_label: str = "reference") -> Path | None:
    """P_stick (95 % Wilson) of the reference, the model's paired and its unpaired runs, one panel per condition of a
    validation record (:func:`pyscatter.analysis.validation.condition_record`); None without conditions."""
    from pyscatter.analysis.tally import wilson_interval
    from pyscatter.analysis.validation import title

    conditions = list(record["facets"].values())
    if not conditions:
        return None
    fig = Figure(figsize=(5.5 * len(conditions), 4.2))
    for k, condition in enumerate(conditions):
        ax = fig.add_subplot(1, len(conditions), k + 1)
        for kind, label, shift, style in (("reference", reference_label, 0.0, "ko"),
                                          ("paired", "model, paired", -0.006, "C0s"),
                                          ("unpaired", "model, own snapshots", 0.006, "C1^")):
            data = []
            for row in condition["rows"]:
                any_row, r = row.get("paired") or row.get("unpaired"), row.get(kind)
                if kind == "reference" and any_row:
                    stuck, n = round(any_row["p_reference"] * any_row["n_reference"]), any_row["n_reference"]
                elif r:
                    stuck, n = round(r["p_model"] * r["n_model"]), r["n_model"]
                else:
                    continue
                low, high = wilson_interval(stuck, n)
                data.append((row["collision_energy"] + shift, stuck / n, stuck / n - low, high - stuck / n))
            if data:
                e, p, low, high = map(np.array, zip(*data))
                ax.errorbar(e, p, yerr=[low, high], fmt=style, capsize=3, label=label)
        ax.set_title(title(condition))
        ax.set_xlabel("collision energy (eV)")
        ax.set_ylabel("P_stick (95 % Wilson)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return Path(out)
