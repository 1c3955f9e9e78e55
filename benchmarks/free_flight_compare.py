"""Free flight against whole-system integration, trajectory by trajectory: two run directories of the same
condition and seeds (``benchmarks/free_flight.sh``), compared per collision energy on structure force calls
and P_stick (Newcombe interval, Fisher's test, and an exact McNemar test on the discordant pairs).

    python benchmarks/free_flight_compare.py runs/free_flight/readme_ff runs/free_flight/readme_noff [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate_model import compare, outcomes  # noqa: E402

from pyscatter.analysis.stored import open_run  # noqa: E402


def force_calls(directory: Path) -> dict[float, int]:
    with open_run(directory) as store:
        return {e: store.counts(store.condition_id(e)).force_calls for e in store.collision_energies()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("free_flight", type=Path)
    parser.add_argument("whole_system", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    free, whole = outcomes(args.free_flight), outcomes(args.whole_system)
    calls = force_calls(args.free_flight), force_calls(args.whole_system)
    rows = []
    for energy in sorted(set(free) & set(whole)):
        n = min(len(free[energy]), len(whole[energy]))
        first = lambda runs: {i: o for i, o in runs.items() if i < n}  # noqa: E731
        row = {"collision_energy": energy, "n": n, "force_calls_free_flight": calls[0][energy],
               "force_calls_whole_system": calls[1][energy],
               "fewer_calls": 1 - calls[0][energy] / len(free[energy]) / (calls[1][energy] / len(whole[energy])),
               **compare(first(free[energy]), first(whole[energy]), paired=True)}
        rows.append(row)
        print(f"E={energy:.2f} eV  n={n}  calls/traj {calls[0][energy] / len(free[energy]):.0f} vs "
              f"{calls[1][energy] / len(whole[energy]):.0f} ({row['fewer_calls']:.1%} fewer)  "
              f"P_stick {row['p_model']:.3f} vs {row['p_reference']:.3f}, diff {row['difference']:+.3f} "
              f"[{row['difference_ci'][0]:+.3f}, {row['difference_ci'][1]:+.3f}], Fisher p {row['fisher_p']:.2f}, "
              f"discordant {row['discordant']} ({row['discordant_fraction']:.1%}), McNemar p {row['mcnemar_p']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
