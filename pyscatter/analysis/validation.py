"""A model against its teacher on the observable: sticking probabilities along whole curves, and a verdict.

Per collision energy (eV): P_stick of both, their difference with a 95 % Newcombe hybrid score interval (Newcombe
1998, method 10), Fisher's exact two-proportion test, and on paired trajectories (the model from the teacher's
initial conditions, trajectory i against trajectory i) an exact McNemar test of the discordant pairs. Per condition:
binomial erf fits (E0, W in eV) of both curves, their differences (for the pairs also with the uncertainty from
resampling the pairs), the McNemar test of all energies' discordant pairs together, and a :class:`Verdict` against a
stated :class:`Bar`. Outcomes are read from run directories (:func:`outcomes`); nothing here runs trajectories
(:mod:`pyscatter.workflows.validate` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest, fisher_exact

from pyscatter.analysis.stored import complete_prefix, open_run
from pyscatter.analysis.fitting import FitError, fit_erf
from pyscatter.analysis.tally import wilson_interval
from pyscatter.outcomes import Outcome

Runs = dict[float, dict[int, Outcome]]
"""Per collision energy (eV), the outcome of each trajectory index."""

PAIRED_DRAWS = 1000
"""Bootstrap resamples of the pairs behind the paired fit differences."""


def outcomes(directory: Path) -> Runs:
    """Per collision energy, the outcome of each trajectory of the complete index prefix (failed ones left out)."""
    with open_run(directory) as store:
        result = {}
        for energy in store.collision_energies():
            cid = store.condition_id(energy)
            n = complete_prefix(store.done_indices(cid))
            result[energy] = {r.index: r.outcome for r in store.trajectories(cid)
                              if r.index < n and r.outcome is not Outcome.FAILED}
        return result


def mcnemar_exact(model_only: int, reference_only: int) -> float:
    """Two-sided exact McNemar p of the discordant pairs (an exact binomial test of ``model_only`` in both at 1/2);
    1 without discordant pairs."""
    n = model_only + reference_only
    return float(binomtest(model_only, n, 0.5).pvalue) if n else 1.0


def newcombe(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """p1 - p2 and its hybrid score interval (Newcombe 1998, method 10: the Wilson intervals of both combined)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    d = p1 - p2
    return d, d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2)


def common_pairs(runs: dict[int, Outcome], partners: dict[int, Outcome]) -> dict[int, Outcome]:
    """The outcomes of ``runs`` whose trajectory index ``partners`` also holds."""
    return {i: o for i, o in runs.items() if i in partners}


def _stuck(runs: dict[int, Outcome]) -> int:
    return sum(o is Outcome.DISSOCIATED for o in runs.values())


def compare(model: dict[int, Outcome], reference: dict[int, Outcome], paired: bool) -> dict:
    """Model against reference at one energy: probabilities, difference, tests. Paired: on their common trajectory
    indices only (partners run ahead of a reference prefix with gaps wait for it)."""
    if paired:
        model, reference = common_pairs(model, reference), common_pairs(reference, model)
    k1, n1, k2, n2 = _stuck(model), len(model), _stuck(reference), len(reference)
    d, low, high = newcombe(k1, n1, k2, n2)
    row = {"n_model": n1, "p_model": k1 / n1, "n_reference": n2, "p_reference": k2 / n2,
           "difference": d, "difference_ci": [low, high],
           "fisher_p": float(fisher_exact([[k1, n1 - k1], [k2, n2 - k2]]).pvalue)}
    if paired:
        common = sorted(model)
        b = sum(model[i] is Outcome.DISSOCIATED and reference[i] is not Outcome.DISSOCIATED for i in common)
        c = sum(model[i] is not Outcome.DISSOCIATED and reference[i] is Outcome.DISSOCIATED for i in common)
        row.update(n_pairs=len(common), discordant=[b, c], discordant_fraction=(b + c) / max(len(common), 1),
                   mcnemar_p=mcnemar_exact(b, c), paired_difference=(b - c) / max(len(common), 1))
    return row


def fit(runs: Runs) -> dict | None:
    """The binomial erf fit of a curve (:meth:`~pyscatter.analysis.fitting.ErfFit.as_dict`), None if the data do not
    determine one."""
    energies = sorted(runs)
    try:
        f = fit_erf(energies, [_stuck(runs[e]) for e in energies], [len(runs[e]) for e in energies])
    except FitError:
        return None
    return f.as_dict()


def paired_fit_difference(model: Runs, reference: Runs, draws: int = PAIRED_DRAWS, seed: int = 0) -> dict | None:
    """E0 and W of the model's erf fit minus the reference's (eV) on their common pairs, with a standard deviation and
    95 % percentile interval from resampling the pairs (per energy, the same trajectory indices for both models).

    The independent errors of the two fits, combined in quadrature, ignore that paired trajectories mostly end alike;
    resampling pairs keeps that correlation, so it measures the difference as sharply as the McNemar test does.
    """
    energies = sorted(set(model) & set(reference))
    stuck = []
    for energy in energies:
        common = sorted(set(model[energy]) & set(reference[energy]))
        stuck.append(np.array([[runs[energy][i] is Outcome.DISSOCIATED for i in common] for runs in (model, reference)]))

    def fits(choices: list[np.ndarray], starts=(None, None)) -> list:
        """The model's and the reference's fit to the chosen pairs (per energy, indices into the common pairs)."""
        n = [len(c) for c in choices]
        return [fit_erf(energies, [int(s[k, c].sum()) for s, c in zip(stuck, choices)], n, start=starts[k])
                for k in (0, 1)]

    try:
        point = fits([np.arange(s.shape[1]) for s in stuck])
    except FitError:
        return None
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(draws):
        try:
            own, ref = fits([rng.integers(0, s.shape[1], s.shape[1]) for s in stuck], starts=point)
        except FitError:
            continue
        samples.append((own.E0 - ref.E0, own.W - ref.W))
    samples = np.array(samples)
    return {"E0": point[0].E0 - point[1].E0, "W": point[0].W - point[1].W, "draws": len(samples),
            **{f"{q}_sd": float(samples[:, k].std(ddof=1)) for k, q in enumerate(("E0", "W"))},
            **{f"{q}_ci95": np.percentile(samples[:, k], [2.5, 97.5]).tolist() for k, q in enumerate(("E0", "W"))}}


def pooled(rows: list[dict]) -> dict | None:
    """The discordant pairs of all energies together (model-only, reference-only dissociations) and their exact
    McNemar test: sharper than any one energy against a shift of the whole curve, which the per-energy tests can
    miss."""
    paired = [row["paired"] for row in rows if "paired" in row]
    if not paired:
        return None
    b, c = (sum(p["discordant"][k] for p in paired) for k in (0, 1))
    return {"discordant": [b, c], "n_pairs": sum(p["n_pairs"] for p in paired), "mcnemar_p": mcnemar_exact(b, c)}


@dataclass(frozen=True)
class Bar:
    """What a model must meet against its teacher on one condition: no test significant at ``alpha`` (the paired
    McNemar p per energy and of all energies pooled, the unpaired Fisher p per energy) and the erf fits' E0 within
    ``max_delta_e0`` eV (paired, from the common pairs, and unpaired), with the paired ΔE0's standard error (pair
    resampling) at most ``max_delta_e0`` too, else the verdict is undecided (a paired ΔE0 beyond the bar with a
    larger error is not a miss: the pairs cannot tell). ``pairs_only``: judge the paired runs alone."""

    alpha: float = 0.01
    max_delta_e0: float = 0.020
    pairs_only: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must lie between 0 and 1, got {self.alpha}")
        if not (math.isfinite(self.max_delta_e0) and self.max_delta_e0 > 0.0):
            raise ValueError(f"max ΔE0 must be a finite number > 0 eV, got {self.max_delta_e0}")

    def __str__(self) -> str:
        tests = "paired McNemar p" + ("" if self.pairs_only else ", unpaired Fisher p")
        return f"{tests} >= {self.alpha:g}, |ΔE0| <= {1e3 * self.max_delta_e0:.0f} meV"


@dataclass(frozen=True)
class Verdict:
    """"pass" (every criterion of the :class:`Bar` evaluated and met), "fail" (one or more missed: ``reasons``) or
    "undecided" (none missed, some not evaluated: ``reasons`` say which)."""

    outcome: str
    reasons: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"verdict": self.outcome, "reasons": list(self.reasons)}


def verdict(condition: dict, bar: Bar) -> Verdict:
    """The :class:`Verdict` of one condition's record (:func:`condition_record`) against ``bar``."""
    missed, missing = [], []
    kinds = ("paired",) if bar.pairs_only else ("paired", "unpaired")
    for kind, test, key in (("paired", "McNemar", "mcnemar_p"), ("unpaired", "Fisher", "fisher_p")):
        if kind not in kinds:
            continue
        rows = [(row["collision_energy"], row[kind]) for row in condition["rows"] if kind in row]
        if not rows:
            missing.append(f"no {kind} runs")
        missed += [f"{kind} {test} p = {p_value(r[key])} at {energy:g} eV" for energy, r in rows if r[key] < bar.alpha]
    pool = condition.get("paired_pooled")
    if pool and pool["mcnemar_p"] < bar.alpha:
        missed.append(f"paired McNemar p = {p_value(pool['mcnemar_p'])} over all energies "
                      f"({pool['discordant'][0]} model-only / {pool['discordant'][1]} reference-only)")
    paired_fit = condition.get("paired_fit_difference") or {}
    shifts = {"paired": paired_fit.get("E0"), "unpaired": (condition["fit_differences"].get("unpaired") or {}).get("E0")}
    spread = paired_fit.get("E0_sd")
    unresolved = spread is not None and spread > bar.max_delta_e0  # a shift of twice the bar would be within 2 sd
    for kind in kinds:
        if shifts[kind] is None:
            missing.append(f"no {kind} ΔE0 (the erf fits are not determined)")
        elif abs(shifts[kind]) > bar.max_delta_e0 and not (kind == "paired" and unresolved):
            missed.append(f"{kind} ΔE0 = {1e3 * shifts[kind]:+.0f} meV")
    if unresolved:  # neither within the bar nor off it: the pairs cannot tell
        missing.append(f"paired ΔE0 = {1e3 * shifts['paired']:+.0f} ± {1e3 * spread:.0f} meV: its error exceeds the "
                       "bar, more pairs needed")
    if missed:
        return Verdict("fail", tuple(missed))
    return Verdict("undecided" if missing else "pass", tuple(missing))


def condition_record(runs: dict[str, Runs], bar: Bar, draws: int = PAIRED_DRAWS) -> dict:
    """One condition's comparison from the outcomes of its runs by kind ("reference", and "paired" and "unpaired"
    where they exist): per-energy rows, fits, fit differences (E0, W and their errors, eV), the pairs' resampled fit
    difference, the pooled McNemar test and the verdict against ``bar``."""
    runs = dict(runs)
    if "paired" in runs:  # the paired curve: partners of reference trajectories only
        runs["paired"] = {e: common_pairs(m, runs["reference"].get(e, {})) for e, m in runs["paired"].items()}
    rows = []
    for energy in sorted(runs["reference"]):
        row = {"collision_energy": energy}
        for kind in ("paired", "unpaired"):
            if runs.get(kind, {}).get(energy):
                row[kind] = compare(runs[kind][energy], runs["reference"][energy], paired=kind == "paired")
        rows.append(row)
    fits = {k: fit(r) for k, r in runs.items()}
    differences = {k: {q: fits[k][f"{q}_eV"] - fits["reference"][f"{q}_eV"] for q in ("E0", "W")}
                   | {f"{q}_err": math.hypot(fits[k][f"{q}_err_eV"], fits["reference"][f"{q}_err_eV"])
                      for q in ("E0", "W")}
                   for k in ("paired", "unpaired") if fits.get(k) and fits.get("reference")}
    record = {"rows": rows, "fits": fits, "fit_differences": differences,
              "paired_fit_difference": paired_fit_difference(runs["paired"], runs["reference"], draws)
              if "paired" in runs else None,
              "paired_pooled": pooled(rows)}
    return record | verdict(record, bar).as_dict()


def p_value(p: float) -> str:
    """Two decimals, or two significant digits below 0.01 (where the bar lies)."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.2g}"


def title(condition: dict) -> str:
    """e.g. ``H2(v=1, J=1)/Cu(111), 925 K`` of a condition record."""
    state = f"{condition.get('molecule', 'H2')}(v={condition['v']}, J={condition['J']})"
    return f"{state}/Cu({condition['surface']}), {condition['T']:g} K"


def verdict_line(condition: dict, bar: Bar) -> str:
    """One line: the condition, its verdict against the bar, and why."""
    why = f": {'; '.join(condition['reasons'])}" if condition["reasons"] else ""
    return f"{title(condition)}: {condition['verdict'].upper()} ({bar}){why}"


def markdown_table(record: dict) -> str:
    """The per-energy comparison as the README's markdown table (discordant pairs: model-only / reference-only)."""
    lines = ["| condition | E (eV) | reference P_stick (n) | model paired (n) | discordant pairs | McNemar p "
             "| model unpaired (n) | Fisher p |", "|" + " --- |" * 8]
    for condition in record["facets"].values():
        for row in condition["rows"]:
            p, u = row.get("paired"), row.get("unpaired")
            ref = u or p  # the unpaired comparison sees the whole reference
            cells = [f"{condition['surface']} (v={condition['v']})", f"{row['collision_energy']:.2f}",
                     f"{ref['p_reference']:.3f} ({ref['n_reference']})" if ref else ""]
            cells += ([f"{p['p_model']:.3f} ({p['n_model']})", f"{p['discordant'][0]} / {p['discordant'][1]} of "
                       f"{p['n_pairs']}", p_value(p['mcnemar_p'])] if p else ["", "", ""])
            cells += [f"{u['p_model']:.3f} ({u['n_model']})", p_value(u['fisher_p'])] if u else ["", ""]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_condition(condition: dict) -> str:
    """A condition record as a fixed-width table with its fits, pooled test and fit differences."""
    rows, fits, pool = condition["rows"], condition["fits"], condition["paired_pooled"]
    lines = [title(condition),
             f"{'E (eV)':>7} {'P_ref (n)':>14} {'P_paired (n)':>14} {'diff [95% CI]':>24} {'McNemar p':>9} "
             f"{'discord.':>8} {'P_unpaired (n)':>15} {'diff [95% CI]':>24} {'Fisher p':>8}"]
    for row in rows:
        p, u = row.get("paired"), row.get("unpaired")
        ref = p or u
        cells = [f"{row['collision_energy']:7.3f}",
                 f"{ref['p_reference']:.3f} ({ref['n_reference']})".rjust(14) if ref else " " * 14]
        for kind, r in (("paired", p), ("unpaired", u)):
            if r is None:
                cells.append(" " * (14 + 25 + (19 if kind == "paired" else 9)))
                continue
            cells.append(f"{r['p_model']:.3f} ({r['n_model']})".rjust(14 if kind == "paired" else 15))
            cells.append(f"{r['difference']:+.3f} [{r['difference_ci'][0]:+.3f}, {r['difference_ci'][1]:+.3f}]".rjust(24))
            if kind == "paired":
                cells.append(f"{r['mcnemar_p']:9.3f} {r['discordant_fraction']:8.3f}")
            else:
                cells.append(f"{r['fisher_p']:8.3f}")
        lines.append(" ".join(cells))
    for kind, f in fits.items():
        if f:
            lines.append(f"  erf fit {kind:>9}: E0 = {f['E0_eV']:.3f} ± {f['E0_err_eV']:.3f} eV, "
                         f"W = {f['W_eV']:.3f} ± {f['W_err_eV']:.3f} eV, A = {f['A']:.3f}")
    if pool:
        lines.append(f"  paired, all energies: {pool['discordant'][0]} model-only and {pool['discordant'][1]} "
                     f"reference-only dissociations in {pool['n_pairs']} pairs, McNemar p = {pool['mcnemar_p']:.3f}")
    for kind, d in condition["fit_differences"].items():
        lines.append(f"  {kind} - reference: ΔE0 = {1e3 * d['E0']:+.0f} ± {1e3 * d['E0_err']:.0f} meV, "
                     f"ΔW = {1e3 * d['W']:+.0f} ± {1e3 * d['W_err']:.0f} meV")
    paired = condition["paired_fit_difference"]
    if paired:
        lines.append(f"  paired - reference, resampling the pairs: ΔE0 = {1e3 * paired['E0']:+.0f} ± "
                     f"{1e3 * paired['E0_sd']:.0f} meV [{1e3 * paired['E0_ci95'][0]:+.0f}, "
                     f"{1e3 * paired['E0_ci95'][1]:+.0f}], ΔW = {1e3 * paired['W']:+.0f} ± {1e3 * paired['W_sd']:.0f} meV")
    return "\n".join(lines)


def vibrational_efficacy(record: dict) -> dict[str, dict]:
    """Per facet with a v=0 and a v=1 condition of the same J: E0(v=0) - E0(v=1) (eV; > 0: v=1 lies ahead, vibrational
    efficacy) of the reference, paired and unpaired fits, with the fits' errors in quadrature; keyed
    ``v0_minus_v1_E0_Cu<facet>``."""
    conditions = record["facets"].values()
    result = {}
    for v0 in conditions:
        for v1 in conditions:
            if (v0["surface"], v0["J"], v0["v"], v1["v"]) != (v1["surface"], v1["J"], 0, 1):
                continue
            efficacy = {kind: {"E0_eV": v0["fits"][kind]["E0_eV"] - v1["fits"][kind]["E0_eV"],
                               "E0_err_eV": math.hypot(v0["fits"][kind]["E0_err_eV"], v1["fits"][kind]["E0_err_eV"])}
                        for kind in ("reference", "paired", "unpaired")
                        if v0["fits"].get(kind) and v1["fits"].get(kind)}
            if efficacy:
                result[f"v0_minus_v1_E0_Cu{v0['surface']}"] = efficacy
    return result
