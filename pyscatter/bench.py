"""Cost of one force call on one structure and per structure in batches (Stark et al. 2023, Table 1 form).

Any :class:`ForceModel` can be timed. Every call sees fresh small random moves (<= ``MOVE`` Å)
of the atoms, as MD steps within a neighbour-list skin do. Times are the best of several calls
in CPU time of this process: equal to wall time for a single-threaded process on a dedicated
core, and far less disturbed by other jobs on a shared machine. A reference model (mace's own
``MACECalculator`` for MACE files) is timed taking turns with the models it is compared with, so
the ratio stays fair while the machine's load changes. Used by ``pyscatter bench force-call``
and ``benchmarks/bench_force_call.py``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from pyscatter.models.base import ASECalculatorModel, ForceModel, Frame

BATCH_SIZES = (1, 8, 32, 128)
MOVE = 0.02  # Å, amplitude of the per-call random moves
SLAB_PBC = (True, True, False)
CLOCK = "process CPU time, best of repeats"


@dataclass
class Row:
    """One backend: ms per call (batch of one) and ms per structure at each batch size."""

    model: str
    backend: str
    dtype: str
    energy_call_ms: float | None = None
    force_call_ms: float | None = None
    per_structure_ms: dict[int, float | None] = field(default_factory=dict)
    reference_ms: float | None = None  # reference energy+forces call, same model and dtype

    def ratio(self, batch_size: int) -> float | None:
        ms = self.per_structure_ms.get(batch_size)
        return None if ms is None or self.reference_ms is None else ms / self.reference_ms

    def as_dict(self) -> dict:
        return asdict(self) | {"ratio_b1": self.ratio(1)}


@dataclass(frozen=True)
class Budget:
    """How long to time each cell: about ``seconds`` of calls, at most ``max_repeats``;
    cells whose single call would take more than ``max_call_s`` are skipped."""

    seconds: float
    max_repeats: int
    max_call_s: float


FULL = Budget(3.0, 20, 5.0)
QUICK = Budget(1.0, 5, 2.0)


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
    ``base`` (Å); the models take turns on the same positions."""

    def call(model: ForceModel, x: torch.Tensor) -> float:
        start = time.process_time()
        model(frame, x, compute_forces)
        return time.process_time() - start

    def round_of_calls() -> list[float]:
        x = torch.from_numpy(base + rng.uniform(-MOVE, MOVE, size=(batch_size, *base.shape)))
        return [call(m, x) for m in models]

    times = [round_of_calls(), round_of_calls()]  # the first is warm-up (lists, TorchScript)
    repeats = int(np.clip(budget.seconds / max(sum(times[1]), 1e-9), 1, budget.max_repeats))
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
            row.per_structure_ms[b] = 1e3 * best_call_seconds([model], frame, base, b, True, budget, rng)[0] / b
    return row


def time_against_reference(
    label: str,
    backends: list[tuple[str, ForceModel]],
    reference: tuple[str, ForceModel] | None,
    frame: Frame,
    base: np.ndarray,
    batch_sizes: tuple[int, ...],
    budget: Budget,
) -> list[Row]:
    """Rows of ``backends`` (name, model) and, first, of the ``reference`` (name, model) at
    batch size 1; the energy+forces calls of one structure are re-timed taking turns, and
    each backend's ``reference_ms`` is the reference's time from that paired round."""
    rows = [time_model(label, name, model, frame, base, batch_sizes, budget) for name, model in backends]
    if reference is None:
        return rows
    ref = time_model(label, reference[0], reference[1], frame, base, (1,), budget)
    paired = best_call_seconds(
        [reference[1], *(m for _, m in backends)], frame, base, 1, True, budget, np.random.default_rng(1)
    )
    ref.force_call_ms = ref.per_structure_ms[1] = 1e3 * paired[0]
    for row, seconds in zip(rows, paired[1:]):
        row.force_call_ms = row.per_structure_ms[1] = 1e3 * seconds
        row.reference_ms = ref.force_call_ms
    return [ref, *rows]


def time_against_teacher(
    label: str,
    backends: list[tuple[str, ForceModel]],
    teacher: tuple[str, ForceModel],
    frame: Frame,
    base: np.ndarray,
    batch_sizes: tuple[int, ...],
    budget: Budget,
) -> list[Row]:
    """Rows of the ``teacher`` (name, model) and of the surrogate ``backends``, all at every batch size;
    each backend's ``reference_ms`` is the teacher's best ms per structure over the batch sizes, so a
    row's best ratio is surrogate cost / teacher cost per structure, each at its own best batch size."""
    teacher_row = time_model(label, f"teacher: {teacher[0]}", teacher[1], frame, base, batch_sizes, budget)
    best = min(ms for ms in teacher_row.per_structure_ms.values() if ms is not None)
    rows = [time_model(label, name, model, frame, base, batch_sizes, budget) for name, model in backends]
    for row in rows:
        row.reference_ms = best
    return [teacher_row, *rows]


def mace_calculator(path: str | Path, dtype: torch.dtype) -> ForceModel:
    """mace's own ``MACECalculator`` on a whole-module MACE file, computing in ``dtype``."""
    from pyscatter.optional import import_optional

    name = str(dtype).removeprefix("torch.")
    calculators = import_optional("mace.calculators")
    calculator = calculators.MACECalculator(model_paths=str(path), device="cpu", default_dtype=name)
    species = frozenset(int(z) for z in calculator.z_table.zs)
    model = ASECalculatorModel(calculator, species, calculator.r_max, name="MACECalculator")
    model.dtype = dtype  # computes in dtype; the wrapper's output is float64
    return model


def slab_structure(path: str | Path | None = None, seed: int = 0) -> tuple[str, Frame, np.ndarray]:
    """(name, frame, positions (N, 3) Å) of the structure to time, periodic in x and y.

    ``path``: any file ASE reads (its first frame). Default: the ideal 56-atom Cu(111) slab
    (a = 3.6149 Å) with its mobile Cu atoms displaced by up to 0.1 Å, as in a thermal
    snapshot, and H2 (0.74 Å, parallel) 7 Å above the top layer.
    """
    import ase.io
    from ase import Atoms

    from pyscatter.initial.surface import build_slab

    if path is not None:
        atoms = ase.io.read(path)
        return Path(path).name, Frame(atoms.numbers, atoms.cell.array, SLAB_PBC), atoms.positions.copy()
    slab = build_slab("111", 3.6149)
    rng = np.random.default_rng(seed)
    cu = slab.atoms.positions + np.where(slab.fixed[:, None], 0.0, rng.uniform(-0.1, 0.1, (len(slab.atoms), 3)))
    centre = 0.5 * (slab.atoms.cell[0] + slab.atoms.cell[1])
    centre[2] = slab.top_layer_height + 7.0
    h2 = centre + np.array([[-0.37, 0.0, 0.0], [0.37, 0.0, 0.0]])
    atoms = Atoms("Cu54H2", positions=np.vstack([cu, h2]), cell=slab.atoms.cell, pbc=SLAB_PBC)
    return "Cu(111)+H2 built", Frame.from_atoms(atoms), atoms.positions.copy()


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_table(rows: list[Row], batch_sizes: tuple[int, ...]) -> str:
    """The rows as a text table: ms per call, ms per structure at each batch size, ratios."""
    head = f"{'model':<24}{'backend':<33}{'dtype':<9}{'E ms':>8}{'E+F ms':>9}"
    head += "".join(f"{f'B={b}':>9}" for b in batch_sizes) + f"{'ratio B=1':>11}{'best ratio':>11}"
    lines = [
        "ms per call (batch of one) and ms per structure (energy+forces) at batch size B;",
        "ratio = ms per structure / reference ms per call, same model and dtype",
        "",
        head,
        "-" * len(head),
    ]
    for r in rows:
        ratios = [x for x in (r.ratio(b) for b in batch_sizes) if x is not None]
        line = f"{r.model:<24}{r.backend:<33}{r.dtype:<9}{_fmt(r.energy_call_ms):>8}{_fmt(r.force_call_ms):>9}"
        line += "".join(f"{_fmt(r.per_structure_ms.get(b)):>9}" for b in batch_sizes)
        line += f"{_fmt(r.ratio(1)):>11}{_fmt(min(ratios) if ratios else None):>11}"
        lines.append(line)
    return "\n".join(lines)


def environment() -> dict:
    """Machine, torch version and thread count the timings were taken with."""
    import platform

    return {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or platform.node()}",
        "move_per_call_A": MOVE,
        "clock": CLOCK,
    }
