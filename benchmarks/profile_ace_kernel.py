"""Pass-by-pass profile of the compiled ACE kernel (``pyscatter/models/ace_kernel.py``) for a shipped model.

Per structure, at batch 16, on the authors' 925 K Cu(111) slab (56 atoms) in two sets: ``contact``, H2 at 16
random sites and orientations 1.0-3.0 Å above the top layer (the structures a trajectory spends its force
calls on, free flight taking the rest), and ``far``, H2 7 Å above it (``pyscatter bench force-call``'s structure
kind). The passes are driven one by one from Python, as :func:`~pyscatter.models.ace_kernel.evaluate` runs
them: (1a) pairs, radials and harmonics; (1b) the atomic basis A; (2) products, site energies and dE/dA;
(3) forces. ``call`` is the whole model call (neighbour lists included) for comparison. Times are process CPU
time, the minimum over repeats of each pass's batch total, in µs per structure. Prints a table, writes JSON.

    python benchmarks/profile_ace_kernel.py [--model h2cu-ace] [--repeats 30] [--out benchmarks/results/ace_kernel_profile.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "asv_bench"))
from benchmarks import h2_batch  # noqa: E402

from pyscatter.bench import environment
from pyscatter.models import load_model
from pyscatter.models import ace_kernel as kernel

ROOT = Path(__file__).resolve().parents[1]
HEIGHTS = {"contact": (1.0, 3.0), "far": (7.0, 7.0)}  # Å, H2 centre above the top layer
PASSES = ("1a radials+harmonics", "1b A accumulation", "2 products+dE/dA", "3 forces")


def pass_times(model, frame: Frame, x: np.ndarray) -> np.ndarray:
    """CPU seconds of each pass over the batch x (B, N, 3), run as :func:`kernel.evaluate` runs them (one readout)."""
    t = model.tables
    lists = model.neighbours.refresh(frame, x)
    p = model._packed(lists)
    N = x.shape[1]
    most = int(np.diff(p.offsets).max())
    ncol = t.table.shape[3]
    n_A = int(sum(n * (2 * l + 1) for l, n, _ in t.blocks))
    n_Y = (t.l_max + 1) ** 2
    inside, vec, dist = np.empty(most, np.int64), np.empty((most, 3)), np.empty(most)
    R, dR = np.empty((most, 2, ncol)), np.empty((most, 2, ncol))
    Ys, monos = np.empty((most, n_Y)), np.empty((most, t.chain.shape[0]))
    A, At, dAt, dA = np.empty((N, n_A)), np.empty((n_A, N)), np.empty((n_A, N)), np.empty((N, n_A))
    pair_features = np.empty((ncol - t.n_rnl, len(t.elements)))
    site, forces, work_p, work_s = np.empty(N), np.empty((N, 3)), np.empty(N), np.empty(N)
    has_split, order, n_with = np.empty(N, np.bool_), np.empty(N, np.int64), np.empty(len(t.elements), np.int64)
    gY, gradient = np.empty(n_Y), np.empty(3)
    gradient_terms = kernel._gradient_terms(t.derivatives, t.exponents, t.terms, t.weights)
    s = t.schedule
    clock = time.process_time
    spent = np.zeros(len(PASSES))
    for b in range(len(x)):
        t0 = clock()
        n_in = kernel._pairs(x, b, p.offsets, p.first, p.second, p.shift, t.cutoff, inside, vec, dist)
        kernel._radials_and_harmonics(n_in, inside, vec, dist, p.species, p.first, p.second, t.table, t.r_min, 1.0 / t.h,
                                      t.chain, t.terms, t.weights, R, dR, Ys, monos, True)
        t1 = clock()
        kernel._atomic_basis(n_in, inside, p.species, p.first, p.second, R, Ys, t.live, t.n_rnl, t.blocks, t.split_species,
                             A, pair_features, has_split)
        t2 = clock()
        kernel._atom_order(p.by_species, p.species_start, has_split, order, n_with)
        kernel._sorted_columns(A, order, At)
        site[:] = 0.0
        kernel._site_energies(At, p.species_start, n_with, s.prefixes, s.tails, s.singles, s.parts, t.readout, site, dAt,
                              work_p, work_s)
        kernel._unsorted_rows(dAt, order, dA)
        t3 = clock()
        kernel._forces(n_in, inside, vec, dist, p.species, p.first, p.second, R, dR, monos, dA, t.w_pair, t.live,
                       t.n_rnl, t.blocks, *gradient_terms, Ys, gY, gradient, forces)
        t4 = clock()
        spent += np.diff([t0, t1, t2, t3, t4])
    return spent


def call_seconds(model, frame: Frame, x: np.ndarray) -> float:
    start = time.process_time()
    model(frame, torch.as_tensor(x))
    return time.process_time() - start


def profile(model, kind: str, batch: int, repeats: int) -> dict:
    """µs per structure of each pass and of the whole call, minimum over repeats."""
    frame, x = h2_batch(batch, HEIGHTS[kind])
    pass_times(model, frame, x)  # compile, build lists
    call_seconds(model, frame, x)
    passes = np.min([pass_times(model, frame, x) for _ in range(repeats)], axis=0) / batch * 1e6
    call = min(call_seconds(model, frame, x) for _ in range(repeats)) / batch * 1e6
    return {"structures": kind, "batch": batch, "passes_us": dict(zip(PASSES, passes.round(1).tolist())),
            "sum_of_passes_us": round(float(passes.sum()), 1), "call_us": round(call, 1)}


def table(rows: list[dict]) -> str:
    head = f"{'structures':<10}{'batch':>6}" + "".join(f"{name:>22}" for name in PASSES) + f"{'sum':>9}{'call':>9}"
    lines = ["µs per structure (process CPU time, min over repeats)", head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['structures']:<10}{r['batch']:>6}" + "".join(f"{v:>22.1f}" for v in r["passes_us"].values())
                     + f"{r['sum_of_passes_us']:>9.1f}{r['call_us']:>9.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="h2cu-ace")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ace_kernel_profile.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    rows = [profile(model, kind, args.batch, args.repeats) for kind in ("contact", "far")]
    print(table(rows))
    result = {"model": args.model, **environment(), "load_average": list(np.round(os.getloadavg(), 2)),
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
