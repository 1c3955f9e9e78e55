"""Cost of one force call per backend on one CPU thread (the form of Stark et al. 2023, Table 1).

For the 56-atom thermal Cu(111)+H2 slab: ms per energy-only and per energy+forces call of one
structure, and ms per structure (energy+forces) at several batch sizes, for the published H2/Cu
MACE model (float32 and float64; scripted, the default, and eager), a random-weight MACE-MP-0
"small"-sized stand-in, EMT, and the ACE surrogate of the published model (``--ace``; its
rows' reference is that MACE teacher at its best batch size, so their ratio is surrogate / teacher
cost per structure). mace's own ``MACECalculator`` is timed in the same run as the
reference; it always computes energy, forces and stress, so its "E" call costs a full call.
Ratio = our ms per structure / its ms per call. The timing code is :mod:`pyscatter.bench`
(also ``pyscatter bench force-call``); prints a table and writes JSON.

    python benchmarks/bench_force_call.py [--quick] [--out benchmarks/results/force_call.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch

from pyscatter.bench import (
    BATCH_SIZES,
    FULL,
    QUICK,
    Budget,
    Row,
    environment,
    format_table,
    mace_calculator,
    slab_structure,
    time_against_reference,
    time_against_teacher,
    time_model,
)
from pyscatter.models.base import Frame

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT.parent / "shared" / "models" / "h2cu_mace_stark2023.model"
STRUCTURE = ROOT.parent / "shared" / "structures" / "cu111_h7.0_full_925K.in"
ACE_SURROGATE = ROOT / "pyscatter" / "data" / "h2cu_ace_surrogate.npz"


def mace_rows(label: str, path: Path, frame: Frame, base, budget: Budget, with_eager: bool) -> list[Row]:
    """pyscatter MACE rows (scripted, optionally eager) with the MACECalculator reference."""
    from pyscatter.models.mace import load_mace

    rows = []
    for dtype in (torch.float32, torch.float64):
        backends = [("pyscatter MACEModel", load_mace(path, dtype=dtype, trust=True))]
        if with_eager:
            backends.append(("pyscatter MACEModel script=False", load_mace(path, dtype=dtype, script=False, trust=True)))
        reference = ("mace MACECalculator", mace_calculator(path, dtype))
        rows += time_against_reference(label, backends, reference, frame, base, BATCH_SIZES, budget)
        print(f"  timed {label} [{str(dtype).removeprefix('torch.')}]", flush=True)
    return rows


def foundation_stand_in(path: Path) -> None:
    """Save a random-weight MACE with MACE-MP-0 "small" hyperparameters for H and Cu to ``path``."""
    from pyscatter.models.mace import random_mace

    torch.save(random_mace((1, 29), hidden_irreps="128x0e", correlation=3, max_ell=3, r_max=6.0), path)


def ace_rows(path: Path, teacher: Path, frame: Frame, base, budget: Budget) -> list[Row]:
    """The ACE surrogate (compiled kernel, float64) and its teacher, the published MACE model in pyscatter
    (float32, the file's precision), both at every batch size: ratio = surrogate / teacher ms per
    structure, each at its best batch size."""
    from pyscatter.models.ace import load_ace
    from pyscatter.models.mace import load_mace

    backends = [("pyscatter ACEModel", load_ace(path))]
    teacher_model = ("pyscatter MACEModel", load_mace(teacher, dtype=torch.float32, trust=True))
    rows = time_against_teacher(f"ACE {path.stem}", backends, teacher_model, frame, base, BATCH_SIZES, budget)
    print(f"  timed ACE {path.name}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller batch cap")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "force_call.json")
    parser.add_argument("--ace", type=Path, default=ACE_SURROGATE, help="ACE surrogate timed against its MACE teacher")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # ase FHI-aims reader, mace/torch deprecation notices
    torch.set_num_threads(1)
    budget = QUICK if args.quick else FULL

    name, frame, base = slab_structure(STRUCTURE)
    started = time.perf_counter()
    rows: list[Row] = []
    if MODEL.is_file():
        rows += mace_rows("H2/Cu MACE (Stark 2023)", MODEL, frame, base, budget, with_eager=True)
    else:
        print(f"skipping the published model: {MODEL} not found")
    with tempfile.TemporaryDirectory() as tmp:
        stand_in = Path(tmp) / "mace_mp0_small_random.model"
        foundation_stand_in(stand_in)
        rows += mace_rows("MP-0-small-size random", stand_in, frame, base, budget, with_eager=False)
    from pyscatter.models.emt import EMTModel

    rows.append(time_model("EMT", "pyscatter EMTModel", EMTModel(), frame, base, BATCH_SIZES, budget))
    if args.ace.is_file() and MODEL.is_file():
        rows += ace_rows(args.ace, MODEL, frame, base, budget)

    print("\n" + format_table(rows, BATCH_SIZES))
    result = {
        "structure": name,
        "n_atoms": frame.n_atoms,
        **environment(),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": [r.as_dict() for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
