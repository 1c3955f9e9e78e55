"""Scale-out through the execution seam: trajectory throughput with 1 and 2 workers, local processes and a
Dask LocalCluster, and Dask's overhead per chunk.

Workload: the default condition (H2(v=1, J=1) on thermal Cu(111) at 925 K, 0.5 eV, EMT, dt 0.1 fs,
max 3 ps) through :func:`pyscatter.workflows.run.run`, every worker with 1 torch thread, batch size
``--batch-size`` per process. Throughput is trajectories over the run's own wall time (first chunk
out to last commit: local worker start-up is included, the Dask cluster's is not; it is reported
apart). Overhead per chunk: no-op tasks that return a chunk's worth of results, run one after
another on one worker. Prints a table and writes JSON.

    python benchmarks/bench_scaling.py [--trajectories 1024] [--batch-size 256] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

import torch

from pyscatter.conditions import RunSpec
from pyscatter.workflows.dask import DaskExecutor
from pyscatter.workflows.execution import chunk_size
from pyscatter.outcomes import Outcome, TrajectoryResult
from pyscatter.workflows.run import SNAPSHOT_FILE, run

SPEC = RunSpec(surface="111", temperature=925.0, v=1, J=1, n_snapshots=8, model="emt")
ENERGY = 0.5


def throughput(label: str, workers: int, n: int, batch: int, snapshots: Path, executor: Executor | None = None) -> dict:
    with tempfile.TemporaryDirectory() as out:
        shutil.copy(snapshots, Path(out) / SNAPSHOT_FILE)
        s = run(SPEC, [ENERGY], n, out_dir=out, batch_size=batch, workers=1 if executor else workers, threads=1,
                executor=executor)[0]
    return {"executor": label, "workers": workers, "trajectories": n, "batch_size": batch,
            "chunk": n if workers == 1 and executor is None else chunk_size(n, batch, workers),
            "wall_s": s["wall_time_s"], "trajectories_per_s": n / s["wall_time_s"], "force_calls": s["force_calls"],
            "p_stick": s["p_stick"]}


def noop_chunk(job, chunk: list[int]) -> tuple[list[TrajectoryResult], int]:
    """What a chunk costs without dynamics: shipping the job in and a chunk of results back."""
    return [TrajectoryResult(i, Outcome.DISSOCIATED, 88.0, 1e-4, 2e-4) for i in chunk], 0


def chunk_overhead(executor: Executor, chunk: int, tasks: int = 100) -> dict:
    job = {"payload": SPEC}
    executor.submit(noop_chunk, job, [0]).result()  # warm up
    start = time.perf_counter()
    for _ in range(tasks // 4):
        executor.submit(noop_chunk, job, list(range(chunk))).result()
    round_trip = (time.perf_counter() - start) / (tasks // 4)
    start = time.perf_counter()
    futures = [executor.submit(noop_chunk, job, list(range(chunk))) for _ in range(tasks)]
    for f in futures:
        f.result()
    return {"round_trip_ms": 1e3 * round_trip, "per_chunk_pipelined_ms": 1e3 * (time.perf_counter() - start) / tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "scaling.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, batch = args.trajectories, args.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        run(SPEC, [ENERGY], 1, out_dir=tmp, batch_size=1)  # thermal snapshots, shared by every configuration
        snapshots = Path(tempfile.mkdtemp()) / SNAPSHOT_FILE
        shutil.copy(Path(tmp) / SNAPSHOT_FILE, snapshots)

    rows, overhead, startup, load = [], {}, {}, [os.getloadavg()]
    for repeat in range(args.repeats):
        for workers in (1, 2):
            rows.append({"repeat": repeat, **throughput("local processes", workers, n, batch, snapshots)})
            print(rows[-1], flush=True)
        for workers in (1, 2):
            start = time.perf_counter()
            with DaskExecutor(n_workers=workers) as dask:
                startup[workers] = time.perf_counter() - start
                dask_threads = set(dask.client.run(torch.get_num_threads).values())
                rows.append({"repeat": repeat, **throughput("dask LocalCluster", workers, n, batch, snapshots, dask)})
                print(rows[-1], flush=True)
                if workers == 1 and repeat == 0:
                    overhead["dask"] = chunk_overhead(dask, chunk_size(n, batch, 2))
        load.append(os.getloadavg())
    with ProcessPoolExecutor(1) as pool:
        overhead["local processes"] = chunk_overhead(pool, chunk_size(n, batch, 2))

    best = {}
    for r in rows:
        key = (r["executor"], r["workers"])
        best[key] = max(best.get(key, 0.0), r["trajectories_per_s"])
    ratios = {label: best[label, 2] / best[label, 1] for label in ("local processes", "dask LocalCluster")}

    print(f"\n{n} trajectories, batch {batch}, 1 torch thread per worker (Dask workers: {sorted(dask_threads)}); "
          f"best of {args.repeats}; load average before/after: {load[0][0]:.2f} / {load[-1][0]:.2f}")
    print(f"{'executor':>18} {'workers':>7} {'traj/s':>8} {'vs 1 worker':>11}")
    for (label, workers), rate in best.items():
        print(f"{label:>18} {workers:7d} {rate:8.3f} {rate / best[label, 1]:11.2f}")
    for label, o in overhead.items():
        print(f"{label:>18} no-op chunk of {chunk_size(n, batch, 2)}: round trip {o['round_trip_ms']:.1f} ms, "
              f"pipelined {o['per_chunk_pipelined_ms']:.1f} ms per chunk")
    print("Dask LocalCluster start-up: " + ", ".join(f"{w} workers {t:.1f} s" for w, t in startup.items()))

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({
        "benchmark": "trajectory throughput, 1 vs 2 workers, local processes and Dask LocalCluster",
        "condition": {**SPEC.as_dict(), "collision_energy": ENERGY}, "model": "emt", "torch_threads_per_worker": 1,
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "load_average": load, "rows": rows,
        "best_trajectories_per_s": {f"{k[0]}, {k[1]} workers": v for k, v in best.items()},
        "ratio_2_over_1": ratios, "chunk_overhead": overhead, "dask_startup_s": startup,
    }, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
