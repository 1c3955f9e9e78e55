#!/usr/bin/env bash
# Free flight against whole-system integration on the README condition (H2(v=1,J=1)/Cu(111), 925 K), same seeds:
# structure force calls, P_stick and wall time per run; then the snapshot-pool check (64 vs 128) and 0.2/0.8 eV.
# Usage: bash benchmarks/free_flight.sh [WORKERS]   (results: benchmarks/results/free_flight/*.json)
set -euo pipefail
workers=${1:-2}
out=benchmarks/results/free_flight
mkdir -p "$out"
common=(--surface 111 --T 925 --v 1 --J 1 --workers "$workers" --json)
run() { local name=$1; shift; local t0=$(date +%s); pyscatter run "${common[@]}" "$@" --out "runs/free_flight/$name" > "$out/$name.json"; echo "$name $(( $(date +%s) - t0 )) s" >> "$out/wall.txt"; }
run readme_ff --trajectories 1000
run readme_noff --trajectories 1000 --no-free-flight
run energies_ff --energy 0.2 0.8 --trajectories 200
run energies_noff --energy 0.2 0.8 --trajectories 200 --no-free-flight
run readme_ff_128 --trajectories 1000 --snapshots 128
run emt_ff --model emt --energy 0.1 --trajectories 500 --T 300
run emt_noff --model emt --energy 0.1 --trajectories 500 --T 300 --no-free-flight
