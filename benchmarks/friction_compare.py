"""Paired comparison of electronic friction (LDFA) against adiabatic dynamics on the same initial conditions.

Both run directories hold one condition run with the same seed, the friction one started from the adiabatic one's
thermal snapshots (``--snapshots-from``), so trajectory i has the same start in both. Per collision energy, on the
trajectory indices both hold: P_stick of each arm with the exact McNemar test of the discordant pairs
(:func:`pyscatter.analysis.validation.compare`), the mean energy given to the electrons per trajectory (by outcome),
and the scattered molecules' v' populations (v_final rounded) per arm. Commands and the result file:
``benchmarks/README.md``.

    python benchmarks/friction_compare.py ADIABATIC_DIR LDFA_DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from pyscatter.analysis.validation import compare, outcomes
from pyscatter.store import RunReader


def _trajectories(directory: Path, energy: float, indices: set[int]) -> dict:
    with RunReader(directory) as store:
        return {r.index: r for r in store.trajectories(store.condition_id(energy)) if r.index in indices}


def _populations(results) -> dict[str, int]:
    scattered = [r for r in results if r.outcome.label == "scattered"]
    return dict(sorted(Counter(str(int(round(r.v_final))) for r in scattered).items()))


def paired(adiabatic: Path, ldfa: Path) -> list[dict]:
    """One record per collision energy both runs hold."""
    rows = []
    reference, friction = outcomes(adiabatic), outcomes(ldfa)
    for energy in sorted(set(reference) & set(friction)):
        row = {"collision_energy": energy, **compare(friction[energy], reference[energy], paired=True)}
        common = set(friction[energy]) & set(reference[energy])
        with_friction = _trajectories(ldfa, energy, common)
        without = _trajectories(adiabatic, energy, common)
        loss = np.array([r.electronic_energy_loss for r in with_friction.values()])
        by_outcome = {}
        for label in ("dissociated", "scattered", "trapped"):
            chosen = np.array([r.electronic_energy_loss for r in with_friction.values() if r.outcome.label == label])
            if len(chosen):
                by_outcome[label] = {"n": len(chosen), "mean_eV": float(chosen.mean())}
        row.update(
            electronic_energy_loss_mean_eV=float(loss.mean()),
            electronic_energy_loss_sem_eV=float(loss.std(ddof=1) / np.sqrt(len(loss))) if len(loss) > 1 else None,
            electronic_energy_loss_by_outcome=by_outcome,
            v_final_populations={"adiabatic": _populations(without.values()), "ldfa": _populations(with_friction.values())},
            scattered_translational_energy_mean_eV={
                arm: float(np.mean([r.translational_energy for r in res.values() if r.outcome.label == "scattered"]))
                for arm, res in (("adiabatic", without), ("ldfa", with_friction))},
        )
        rows.append(row)
    return rows


def table(rows: list[dict], facet: str) -> str:
    """Markdown rows of :func:`paired`'s records for Cu(``facet``)."""
    lines = []
    for r in rows:
        d, (b, c) = r["paired_difference"], r["discordant"]
        pops = r["v_final_populations"]
        lines.append(
            f"| Cu({facet}) | {r['collision_energy']:g} | {r['n_pairs']} | {r['p_reference']:.3f} | {r['p_model']:.3f} | "
            f"{d:+.3f} ({b} / {c}) | {r['mcnemar_p']:.2g} | {1e3 * r['electronic_energy_loss_mean_eV']:.0f} ± "
            f"{1e3 * r['electronic_energy_loss_sem_eV']:.0f} | {pops['adiabatic']} | {pops['ldfa']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("adiabatic", type=Path)
    parser.add_argument("ldfa", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="write the records here")
    parser.add_argument("--facet", default="111", help="the facet's name in the markdown row printed last")
    args = parser.parse_args()
    rows = paired(args.adiabatic, args.ldfa)
    for row in rows:
        print(json.dumps(row))
    print(table(rows, args.facet))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
