"""Cost of an ACE committee against one model: K members' energies, and energies and forces, per structure.

The 56-atom thermal Cu(111) slab of Stark et al. (925 K) with its H2 lowered to 2 Å above the top layer
(inside the model's range), in batches of 8 and 64 randomly moved copies: ms per structure (process CPU
time, best of repeats, one thread) of one model (``--single``, the model the committee was drawn around:
energies; energies and forces), all K members from one
basis evaluation (:meth:`pyscatter.models.ace.ACEModel.committee_energies_forces`), and the K members
loaded and called one after another. Prints a table and writes JSON.

    python benchmarks/committee_cost.py [--committee h2cu-ace-committee] [--single h2cu-ace] [--out benchmarks/results/committee_cost.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pyscatter.bench import FULL, best_call_seconds, environment, slab_structure
from pyscatter.models import committee_members, load_model

ROOT = Path(__file__).resolve().parent.parent
STRUCTURE = ROOT.parent / "shared" / "structures" / "cu111_h7.0_full_925K.in"
H2_LOWERED = 5.0  # Å: from 7 Å to 2 Å above the top layer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--committee", default="h2cu-ace-committee")
    parser.add_argument("--single", default="h2cu-ace")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "committee_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    name, frame, base = slab_structure(STRUCTURE)
    base[frame.numbers == 1, 2] -= H2_LOWERED
    single, committee = load_model(args.single), load_model(args.committee)
    members = [load_model(spec) for spec in committee_members(args.committee)]

    def all_members(frame, x, compute_forces):
        return committee.committee_energies_forces(frame, x, compute_forces)

    def one_by_one(frame, x, compute_forces):
        return [m(frame, x, compute_forces) for m in members]

    rows = []
    for batch in (8, 64):
        rng = np.random.default_rng(0)
        for forces in (False, True):
            one, together, separate = best_call_seconds([single, all_members, one_by_one], frame, base, batch, forces, FULL, rng)
            rows.append({"batch": batch, "forces": forces, "one_model_ms": 1e3 * one / batch,
                         "committee_ms": 1e3 * together / batch, "members_one_by_one_ms": 1e3 * separate / batch,
                         "committee_over_one": together / one, "one_by_one_over_one": separate / one})
    k = len(members)
    print(f"{name}, H2 {H2_LOWERED:g} Å lower, K = {k} members; ms per structure (ratio to one model)")
    print("| batch | computed | one model | K members, one basis | K members, one by one |")
    print("|---|---|---|---|---|")
    for r in rows:
        what = "E + F" if r["forces"] else "E"
        print(f"| {r['batch']} | {what} | {r['one_model_ms']:.3f} | {r['committee_ms']:.3f} ({r['committee_over_one']:.2f}x) "
              f"| {r['members_one_by_one_ms']:.3f} ({r['one_by_one_over_one']:.2f}x) |")
    Path(args.out).write_text(json.dumps({"committee": args.committee, "single": args.single, "members": k, "structure": name,
                                          "h2_lowered_A": H2_LOWERED, "rows": rows, "environment": environment()}, indent=1))


if __name__ == "__main__":
    main()
