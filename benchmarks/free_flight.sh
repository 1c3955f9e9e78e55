#!/usr/bin/env bash
# Free flight against whole-system integration on the README condition (H2(v=1,J=1)/Cu(111), 925 K), same seeds:
# structure force calls, P_stick and wall time per run; then the snapshot-pool check (64 vs 128) and 0.2/0.8 eV.
# Usage: bash benchmarks/free_flight.sh [WORKERS] [N]   (N trajectories for the README condition, default 1000;
# the run directories under runs/free_flight resume, so a larger N later only adds trajectories)
# Results: benchmarks/results/free_flight/*.json and wall.txt (seconds per invocation).
set -euo pipefail
workers=${1:-2}
n=${2:-1000}
out=benchmarks/results/free_flight
mkdir -p "$out"
common=(--surface 111 --T 925 --v 1 --J 1 --workers "$workers" --json)
run() { local name=$1; shift; local t0=$(date +%s); pyscatter run "${common[@]}" "$@" --out "runs/free_flight/$name" > "$out/$name.json"; echo "$name $(( $(date +%s) - t0 )) s" >> "$out/wall.txt"; }
run readme_ff --trajectories "$n"
run readme_noff --trajectories "$n" --no-free-flight
run emt_ff --model emt --energy 0.1 --trajectories 500 --T 300
run emt_noff --model emt --energy 0.1 --trajectories 500 --T 300 --no-free-flight
run energies_ff --energy 0.2 0.8 --trajectories $(( n / 5 ))
run energies_noff --energy 0.2 0.8 --trajectories $(( n / 5 )) --no-free-flight
run readme_ff_128 --trajectories "$n" --snapshots 128
