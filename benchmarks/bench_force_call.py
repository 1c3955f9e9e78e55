"""Cost of one force call per backend on one CPU thread (the form of Stark et al. 2023, Table 1).

For the 56-atom thermal Cu(111)+H2 slab: ms per energy-only and per energy+forces call of one
structure, and ms per structure (energy+forces) at several batch sizes, for the published H2/Cu
MACE model (float32 and float64; scripted, the default, and eager), a random-weight MACE-MP-0
"small"-sized stand-in, and EMT. mace's own ``MACECalculator`` is timed in the same run as the
reference; it always computes energy, forces and stress, so its "E" call costs a full call.
Ratio = our ms per structure / its ms per call; the energy+forces calls of one structure are
timed taking turns with it, so the B=1 ratio stays fair while the machine's load changes.

Every call sees fresh small moves (<= 0.02 Å) of the atoms, as MD steps within the
neighbour-list skin do. Times are the best of several calls in CPU time of this single-threaded
process: equal to wall time on a dedicated core, and far less disturbed by other jobs on a
shared machine. Prints a table and writes JSON.

    python benchmarks/bench_force_call.py [--quick] [--out benchmarks/results/force_call.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase.io
import numpy as np
import torch

from pyscatter.models.base import ASECalculatorModel, ForceModel, Frame

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT.parent / "shared" / "models" / "h2cu_mace_stark2023.model"
STRUCTURE = ROOT.parent / "shared" / "structures" / "cu111_h7.0_full_925K.in"
BATCH_SIZES = (1, 8, 32, 128)
MOVE = 0.02  # Å, amplitude of the per-call random moves


@dataclass
class Row:
    """One backend: ms per call (batch of one) and ms per structure at each batch size."""

    model: str
    backend: str
    dtype: str
    energy_call_ms: float | None = None
    force_call_ms: float | None = None
    per_structure_ms: dict[int, float | None] = field(default_factory=dict)
    reference_ms: float | None = None  # MACECalculator energy+forces call, same model and dtype

    def ratio(self, batch_size: int) -> float | None:
        ms = self.per_structure_ms.get(batch_size)
        return None if ms is None or self.reference_ms is None else ms / self.reference_ms


@dataclass
class Budget:
    """How long to time each cell: about ``seconds`` of calls, at most ``max_repeats``;
    cells whose single call would take more than ``max_call_s`` are skipped."""

    seconds: float
    max_repeats: int
    max_call_s: float


def best_call_seconds(
    models: list[ForceModel],
    frame: Frame,
    base: np.ndarray,
    batch_size: int,
    compute_forces: bool,
    budget: Budget,
    rng: np.random.Generator,
) -> list[float]:
    """Best CPU time (s) of one call of each model on ``batch_size`` randomly moved copies of
    ``base`` (Å); the models take turns on the same positions, so a comparison is fair even
    while the machine's load changes."""

    def call(model: ForceModel, x: torch.Tensor) -> float:
        start = time.process_time()
        model(frame, x, compute_forces)
        return time.process_time() - start

    def round_of_calls() -> list[float]:
        x = torch.from_numpy(base + rng.uniform(-MOVE, MOVE, size=(batch_size, *base.shape)))
        return [call(m, x) for m in models]

    times = [round_of_calls(), round_of_calls()]  # the first is warm-up (lists, TorchScript)
    repeats = int(np.clip(budget.seconds / sum(times[1]), 1, budget.max_repeats))
    times += [round_of_calls() for _ in range(repeats)]
    return [min(t) for t in zip(*times[1:])]


def time_model(
    label: str,
    backend: str,
    model: ForceModel,
    frame: Frame,
    base: np.ndarray,
    batch_sizes: tuple[int, ...],
    budget: Budget,
) -> Row:
    """Time any :class:`ForceModel`: energy-only and energy+forces calls, then batch sizes."""
    rng = np.random.default_rng(0)
    row = Row(label, backend, str(model.dtype).removeprefix("torch."))
    row.energy_call_ms = 1e3 * best_call_seconds([model], frame, base, 1, False, budget, rng)[0]
    row.force_call_ms = 1e3 * best_call_seconds([model], frame, base, 1, True, budget, rng)[0]
    for b in batch_sizes:
        if b == 1:
            row.per_structure_ms[b] = row.force_call_ms
        elif b * row.force_call_ms / 1e3 > budget.max_call_s:
            row.per_structure_ms[b] = None
        else:
            row.per_structure_ms[b] = (
                1e3 * best_call_seconds([model], frame, base, b, True, budget, rng)[0] / b
            )
    print(f"  timed {label} [{backend}, {row.dtype}]", flush=True)
    return row


def mace_rows(
    label: str,
    path: Path,
    frame: Frame,
    base: np.ndarray,
    batch_sizes: tuple[int, ...],
    budget: Budget,
    with_eager: bool,
) -> list[Row]:
    """pyscatter MACE rows (scripted, optionally eager) with the MACECalculator reference."""
    from mace.calculators import MACECalculator

    from pyscatter.models.mace import load_mace

    rows = []
    for dtype in (torch.float32, torch.float64):
        name = str(dtype).removeprefix("torch.")
        calculator = MACECalculator(model_paths=str(path), device="cpu", default_dtype=name)
        species = frozenset(int(z) for z in calculator.z_table.zs)
        reference = ASECalculatorModel(calculator, species, calculator.r_max, name="MACECalculator")
        reference.dtype = dtype  # computes in dtype; the wrapper reports float64 output
        ref = time_model(label, "mace MACECalculator", reference, frame, base, (1,), budget)
        rows.append(ref)
        backends = [("pyscatter MACEModel", True)] + (
            [("pyscatter MACEModel script=False", False)] if with_eager else []
        )
        models = [load_mace(path, dtype=dtype, script=script) for _, script in backends]
        ours = [
            time_model(label, b, m, frame, base, batch_sizes, budget) for (b, _), m in zip(backends, models)
        ]
        paired = best_call_seconds(
            [reference, *models], frame, base, 1, True, budget, np.random.default_rng(1)
        )
        ref.force_call_ms = ref.per_structure_ms[1] = 1e3 * paired[0]
        for row, seconds in zip(ours, paired[1:]):
            row.force_call_ms = row.per_structure_ms[1] = 1e3 * seconds
            row.reference_ms = ref.force_call_ms
        rows += ours
    return rows


def foundation_stand_in(path: Path) -> None:
    """Save a random-weight MACE with MACE-MP-0 "small" hyperparameters for H and Cu to ``path``."""
    from pyscatter.models.mace import random_mace

    module = random_mace(
        (1, 29), hidden_irreps="128x0e", correlation=3, max_ell=3, num_interactions=2, r_max=6.0
    )
    torch.save(module, path)


def emt_rows(frame: Frame, base: np.ndarray, batch_sizes: tuple[int, ...], budget: Budget) -> list[Row]:
    try:
        from pyscatter.models.emt import EMTModel
    except ImportError:
        return []
    return [time_model("EMT", "pyscatter EMTModel", EMTModel(), frame, base, batch_sizes, budget)]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[Row], batch_sizes: tuple[int, ...]) -> None:
    head = f"{'model':<24}{'backend':<33}{'dtype':<9}{'E ms':>8}{'E+F ms':>9}"
    head += "".join(f"{f'B={b}':>9}" for b in batch_sizes) + f"{'ratio B=1':>11}{'best ratio':>11}"
    print("\nms per call (batch of one) and ms per structure (energy+forces) at batch size B;")
    print("ratio = ms per structure / MACECalculator ms per call, same model and dtype\n")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratios = [x for x in (r.ratio(b) for b in batch_sizes) if x is not None]
        line = (
            f"{r.model:<24}{r.backend:<33}{r.dtype:<9}{_fmt(r.energy_call_ms):>8}{_fmt(r.force_call_ms):>9}"
        )
        line += "".join(f"{_fmt(r.per_structure_ms.get(b)):>9}" for b in batch_sizes)
        line += f"{_fmt(r.ratio(1)):>11}{_fmt(min(ratios) if ratios else None):>11}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller batch cap")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "force_call.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # ase FHI-aims reader, mace/torch deprecation notices
    torch.set_num_threads(1)
    budget = Budget(1.0, 5, 2.0) if args.quick else Budget(3.0, 20, 5.0)

    atoms = ase.io.read(STRUCTURE)
    frame = Frame(atoms.numbers, atoms.cell.array, (True, True, False))
    base = atoms.positions.copy()
    started = time.perf_counter()
    rows: list[Row] = []
    if MODEL.is_file():
        rows += mace_rows("H2/Cu MACE (Stark 2023)", MODEL, frame, base, BATCH_SIZES, budget, True)
    else:
        print(f"skipping the published model: {MODEL} not found")
    with tempfile.TemporaryDirectory() as tmp:
        stand_in = Path(tmp) / "mace_mp0_small_random.model"
        foundation_stand_in(stand_in)
        rows += mace_rows("MP-0-small-size random", stand_in, frame, base, BATCH_SIZES, budget, False)
    rows += emt_rows(frame, base, BATCH_SIZES, budget)

    print_table(rows, BATCH_SIZES)
    result = {
        "structure": STRUCTURE.name,
        "n_atoms": len(atoms),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or platform.node()}",
        "move_per_call_A": MOVE,
        "clock": "process CPU time, best of repeats",
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": [asdict(r) | {"ratio_b1": r.ratio(1)} for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out} ({result['seconds']} s)")


if __name__ == "__main__":
    main()
