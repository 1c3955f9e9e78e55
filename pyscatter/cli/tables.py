"""The one results table of the command line (``pyscatter run``, ``pyscatter curve``)."""

from __future__ import annotations

import math


def format_table(rows: list[dict]) -> str:
    """One line per collision energy of summary dicts (:func:`pyscatter.workflows.run.summary`'s keys): trajectories,
    their outcomes, P_stick with its 95 % Wilson interval; then, where the rows carry them, the trajectories whose
    energy strayed over 10 meV and the wall time (a run's), and a committee's shared trajectories, mean P_stick and
    model sd."""
    from pyscatter.analysis.committee import COMMITTEE_HEADER, committee_columns

    p = lambda x: f"{x:8.4f}" if x is not None and math.isfinite(x) else f"{'-':>8}"  # noqa: E731
    cost = any("wall_time_s" in r for r in rows)
    committee = any("p_stick_model_sd" in r for r in rows)
    lines = [f"{'E (eV)':>7} {'N':>6} {'diss':>6} {'scat':>6} {'trap':>6} {'fail':>6} {'P_stick':>8} {'95% CI':>17}"
             + (f" {'|dE|>10meV':>10} {'wall (s)':>9}" if cost else "") + (f" {COMMITTEE_HEADER}" if committee else "")]
    for r in rows:
        low, high = r["p_stick_ci"]
        lines.append(f"{r['collision_energy']:7.3f} {r['n_trajectories']:6d} {r['n_dissociated']:6d}"
                     f" {r['n_scattered']:6d} {r['n_trapped']:6d} {r['n_failed']:6d} {p(r['p_stick'])}"
                     f" [{low:7.4f}, {high:7.4f}]"
                     + (f" {r['n_energy_error_above_10meV']:10d} {r['wall_time_s']:9.1f}" if cost else "")
                     + (" " + committee_columns(r["committee_trajectories"], r["p_stick_committee_mean"],
                                                r["p_stick_model_sd"]) if committee else ""))
    return "\n".join(lines)
