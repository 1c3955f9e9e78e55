"""The MACE teacher on a GPU against the same model on one CPU thread: agreement and cost per structure.

On the 56-atom Cu(111)+H2 structure of :func:`pyscatter.bench.slab_structure` with the molecule 1.6 Å above the
top layer (inside the model's range) and every atom moved by up to 0.1 Å: energies (eV) and forces (eV/Å) of a
batch on ``--device`` against the CPU (both in the file's float32; the CPU is the reference), then wall-clock ms
per structure of energy+forces calls at several batch sizes on each (best of repeats after a warm-up, the GPU
synchronised), and their ratio. Prints a table and writes JSON.

    python benchmarks/teacher_gpu.py [--device cuda] [--out benchmarks/results/teacher_gpu.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pyscatter.bench import environment, slab_structure
from pyscatter.models import load_model

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT.parent / "shared" / "models" / "h2cu_mace_stark2023.model"
GPU_BATCHES = (1, 16, 64, 128, 256, 512)
CPU_BATCHES = (1, 4)
CHECK_BATCH = 16
MOVE = 0.1  # Å
CLOCK = "wall clock, best of repeats after a warm-up, the GPU synchronised"


def structures(base: np.ndarray, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` copies of ``base`` (Å) with every atom moved by up to :data:`MOVE`."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(base + rng.uniform(-MOVE, MOVE, size=(n, *base.shape)))


def ms_per_structure(model, frame, base: np.ndarray, batch_size: int, repeats: int, synchronise) -> float:
    """Best wall-clock ms per structure of an energy+forces call on ``batch_size`` moved copies of ``base``."""
    x = structures(base, batch_size, seed=batch_size)
    model(frame, x)  # warm-up: lists, TorchScript
    best = float("inf")
    for _ in range(repeats):
        synchronise()
        start = time.perf_counter()
        model(frame, x)
        synchronise()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", type=Path, default=TEACHER)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_gpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, frame, base = slab_structure()
    top = base[:-2, 2].max()
    base[-2:, 2] += top + 1.6 - base[-2:, 2].mean()  # the molecule inside the model's range of the surface
    cpu = load_model(str(args.teacher), trust=True)
    gpu = load_model(str(args.teacher), trust=True, device=args.device)

    x = structures(base, CHECK_BATCH)
    on_cpu, on_gpu = cpu(frame, x), gpu(frame, x)
    check = {"structures": CHECK_BATCH,
             "max_energy_difference_eV": float((on_gpu.energies - on_cpu.energies).abs().max()),
             "max_force_difference_eV_per_A": float((on_gpu.forces - on_cpu.forces).abs().max()),
             "max_force_eV_per_A": float(on_cpu.forces.abs().max())}
    print(f"{args.device} against cpu on {CHECK_BATCH} structures: max |ΔE| {check['max_energy_difference_eV']:.2e} eV, "
          f"max |ΔF| {check['max_force_difference_eV_per_A']:.2e} eV/Å (largest force {check['max_force_eV_per_A']:.2f})")

    synchronise = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else (lambda: None)
    timings = {"cpu, 1 thread": {b: ms_per_structure(cpu, frame, base, b, args.repeats, lambda: None) for b in CPU_BATCHES},
               args.device: {b: ms_per_structure(gpu, frame, base, b, args.repeats, synchronise) for b in GPU_BATCHES}}
    best_cpu = min(timings["cpu, 1 thread"].values())
    print(f"{'where':<16}{'batch':>7}{'ms/structure':>15}{'CPU thread / this':>20}")
    for where, rows in timings.items():
        for b, ms in rows.items():
            print(f"{where:<16}{b:>7}{ms:>15.3f}{best_cpu / ms:>20.1f}")
    record = {"teacher": args.teacher.name, "structure": "Cu(111)+H2, molecule 1.6 Å above the top layer, atoms moved "
              f"by up to {MOVE} Å", "check": check, "ms_per_structure": timings,
              "device_name": torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else args.device,
              "environment": {**environment(), "move_per_call_A": MOVE, "clock": CLOCK}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
