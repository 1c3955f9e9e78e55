"""How fast Ctrl-C (SIGINT) and SIGTERM stop the README command, and that finished trajectories are kept.

Starts ``pyscatter run --surface 111 --T 925 --v 1 --J 1`` (default model, ``--workers 2``) in a fresh run
directory (seeded with ``--snapshots``, a README run's ``thermal_snapshots.npz``, to skip thermalisation), waits until a few trajectories are stored, sends the signal, and measures the seconds until the
process has exited (workers joined, last commit done). Prints a table and writes JSON.

    python benchmarks/stop_latency.py [--repeats 2] [--workers 2] [--snapshots RUN_DIR/thermal_snapshots.npz]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyscatter.store import RunReader

CLI = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
       "from pyscatter.cli.main import main; sys.exit(main())")
"""``pyscatter`` with Python's Ctrl-C handler even if this script was started with SIGINT ignored (a background job)."""
ARGS = ["run", "--surface", "111", "--T", "925", "--v", "1", "--J", "1", "--trajectories", "1000"]


def stored(directory: Path) -> int:
    try:
        with RunReader(directory) as store:
            return sum(store.counts(store.condition_id(e)).n_trajectories for e in store.collision_energies())
    except Exception:  # noqa: BLE001 - the store is not there yet
        return 0


def stop_once(signum: signal.Signals, workers: int, snapshots: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        if snapshots is not None:
            out.mkdir()
            shutil.copy(snapshots, out / "thermal_snapshots.npz")
        process = subprocess.Popen([sys.executable, "-c", CLI, *ARGS, "--workers", str(workers), "--out", str(out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while stored(out) < 4 and process.poll() is None:
            time.sleep(0.2)
        before = stored(out)
        sent = time.perf_counter()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
        seconds = time.perf_counter() - sent
        return {"signal": signum.name, "seconds_to_exit": seconds, "exit_code": process.returncode,
                "stored_when_signalled": before, "kept": stored(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--snapshots", type=Path)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "stop_latency.json")
    args = parser.parse_args()
    rows = [stop_once(s, args.workers, args.snapshots) for _ in range(args.repeats) for s in (signal.SIGINT, signal.SIGTERM)]
    print(f"{'signal':8} {'s to exit':>9} {'exit':>4} {'stored':>6} {'kept':>5}")
    for r in rows:
        print(f"{r['signal']:8} {r['seconds_to_exit']:9.2f} {r['exit_code']:4d} {r['stored_when_signalled']:6d} {r['kept']:5d}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    args.json.write_text(json.dumps({"workers": args.workers, "load_average_at_end": load, "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
