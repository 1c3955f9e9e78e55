"""airspeed velocity suite: cost of the shipped ``h2cu-ace`` per structure, the engine's share outside the
force calls, and a 50-trajectory run of the README condition (Cu(111), 925 K, H2(v=1, J=1), 0.5 eV).

Compare two commits on one machine in one sitting (from the repository root; ``asv.conf.json``)::

    asv continuous 7337d5e HEAD -b ForceCall      # ratios of every benchmark, before/after
    asv run --quick --python=same                  # this checkout, once each

This file uses only public pyscatter API that older commits have too: asv imports it from the working
tree and runs it against each commit's pyscatter. Times are process CPU time (one thread).
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[3] / "shared"
STRUCTURE = SHARED / "structures" / "cu111_h7.0_full_925K.in"
MOVE = 0.02  # Å per call, as pyscatter.bench


def h2_batch(batch: int, heights: tuple[float, float] = (1.0, 3.0), seed: int = 0):
    """The authors' 925 K Cu(111) slab (56 atoms) with H2 at ``batch`` random sites and orientations, its centre
    ``heights`` (Å, uniform) above the top layer; the default 1-3 Å is where a trajectory spends its force
    calls: (Frame, positions (B, N, 3) Å)."""
    import ase.io

    from pyscatter.models.base import Frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ase's FHI-aims reader
        atoms = ase.io.read(STRUCTURE)
    rng = np.random.default_rng(seed)
    hydrogen = np.flatnonzero(atoms.numbers == 1)
    top = atoms.positions[atoms.numbers == 29, 2].max()
    cell = atoms.cell.array
    x = np.repeat(atoms.positions[None], batch, axis=0)
    for b in range(batch):
        axis = rng.normal(size=3)
        centre = np.array([*(rng.uniform(0, 1, 2) @ cell[:2, :2]), top + rng.uniform(*heights)])
        half = 0.5 * rng.uniform(0.74, 0.9) * axis / np.linalg.norm(axis)
        x[b, hydrogen] = [centre - half, centre + half]
    return Frame(atoms.numbers, cell, (True, True, False)), x


class ForceCall:
    """Energy+forces of ``h2cu-ace`` on H2-near-surface structures: seconds per call of ``batch`` structures
    (``time_``) and ms per structure (``track_``, best of 20 calls)."""

    params = [1, 16]
    param_names = ["batch"]
    timer = time.process_time
    timeout = 600

    def setup(self, batch):
        from pyscatter.models import load_model

        self.model = load_model("h2cu-ace")
        self.frame, self.x = h2_batch(batch)
        self.rng = np.random.default_rng(1)
        self.model(self.frame, torch.as_tensor(self.x))  # compile, neighbour lists

    def moved(self):
        return torch.as_tensor(self.x + self.rng.uniform(-MOVE, MOVE, self.x.shape))

    def time_force_call(self, batch):
        self.model(self.frame, self.moved())

    def track_ms_per_structure(self, batch):
        best = np.inf
        for _ in range(20):
            x = self.moved()
            start = time.process_time()
            self.model(self.frame, x)
            best = min(best, time.process_time() - start)
        return 1e3 * best / batch

    track_ms_per_structure.unit = "ms"


class Engine:
    """The batched engine on 16 trajectories of the README condition with ``h2cu-ace`` (batch 16, free flight):
    share of the wall time outside the model's force calls (``benchmarks/bench_engine.py``'s measure)."""

    timeout = 1800
    number = 1
    repeat = 1

    def setup(self):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        import bench_engine
        from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
        from pyscatter.initial.surface import build_slab, lattice_constant
        from pyscatter.initial.thermal import thermalise
        from pyscatter.models import load_model

        spec = bench_engine.SPEC
        model = load_model("h2cu-ace")
        slab = build_slab(spec.surface, lattice_constant(model, spec.temperature))
        snapshots = thermalise(model, slab, spec.temperature, n_snapshots=4, seed=0)
        self.initial = build_initial_conditions(spec, bench_engine.ENERGY, slab, snapshots, quantised_molecule(spec, model))
        self.batched = bench_engine.batched

    def track_outside_force_share(self):
        return self.batched("h2cu-ace", self.initial, 16, 16, True)["outside_force_call_share"]

    track_outside_force_share.unit = "fraction"


class ReadmeRun:
    """``pyscatter run --surface 111 --T 925 --v 1 --J 1`` at 0.5 eV, 50 trajectories, one worker, default
    model (``h2cu-ace``): wall seconds of the whole run, slab thermalisation included."""

    timeout = 3600
    number = 1
    repeat = 1
    warmup_time = 0

    def time_run_50_trajectories(self):
        from pyscatter.conditions import RunSpec
        from pyscatter.workflows.run import run

        with tempfile.TemporaryDirectory() as directory:
            run(RunSpec(surface="111", temperature=925.0, v=1, J=1), [0.5], 50, out_dir=directory, workers=1)

    time_run_50_trajectories.timer = time.perf_counter
