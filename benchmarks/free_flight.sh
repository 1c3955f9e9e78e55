#!/usr/bin/env bash
# Free flight against whole-system integration on the README condition (H2(v=1,J=1)/Cu(111), 925 K), same seeds:
# structure force calls, P_stick and wall time per run; the snapshot-pool check (64 vs 128), 0.2/0.8 eV and EMT;
# "before": the README command with the code before the engine issue (commit 0c998fe, checked out in a worktree);
# "tail_before"/"tail_after": a pure tail (as many trajectories as batch slots, 16, one worker, no free flight: slots
# only empty), old code (SkipUnchanged, parked slots) against compaction.
# Usage: bash benchmarks/free_flight.sh [WORKERS] [N] [STEP ...]   (N trajectories for the README condition,
# default 1000; STEPs default to all, in this order: readme_ff readme_noff energies_ff energies_noff readme_ff_128
# emt_ff emt_noff before tail_before tail_after). The run directories under runs/free_flight resume, so a larger N only adds trajectories.
# Results: benchmarks/results/free_flight/*.json and wall.txt (seconds per invocation, with workers and load).
set -euo pipefail
workers=${1:-2}
n=${2:-1000}
shift $(( $# < 2 ? $# : 2 ))
steps=${*:-readme_ff readme_noff energies_ff energies_noff readme_ff_128 emt_ff emt_noff before tail_before tail_after}
out=benchmarks/results/free_flight
mkdir -p "$out" runs/free_flight
common=(--surface 111 --T 925 --v 1 --J 1 --workers "$workers" --json)
timed() {
  local name=$1; shift; local t0=$(date +%s)
  "$@" > "$out/$name.json"
  echo "$name $(( $(date +%s) - t0 )) s, $workers workers, N=$n, load before $(cut -d' ' -f1-3 /proc/loadavg), $(git rev-parse --short HEAD)" >> "$out/wall.txt"
}
run() { local name=$1; shift; timed "$name" pyscatter run "${common[@]}" "$@" --out "runs/free_flight/$name"; }
old() {
  [ -d ../old ] || git worktree add ../old 0c998fe
  local name=$1 code; shift; code=$(cd ../old && pwd)  # first on sys.path, before this checkout's editable install
  timed "$name" python -c "import sys; sys.path.insert(0, '$code'); from pyscatter.cli import main; sys.exit(main(sys.argv[1:]))" \
    run "${common[@]}" "$@" --out "runs/free_flight/$name"
}
tail_args=(--trajectories 16 --batch-size 16)
for step in $steps; do
  case $step in
    readme_ff) run readme_ff --trajectories "$n" ;;
    readme_noff) run readme_noff --trajectories "$n" --no-free-flight ;;
    energies_ff) run energies_ff --energy 0.2 0.8 --trajectories $(( n / 5 )) ;;
    energies_noff) run energies_noff --energy 0.2 0.8 --trajectories $(( n / 5 )) --no-free-flight ;;
    readme_ff_128) run readme_ff_128 --trajectories "$n" --snapshots 128 ;;
    emt_ff) run emt_ff --model emt --energy 0.1 --trajectories 500 --T 300 ;;
    emt_noff) run emt_noff --model emt --energy 0.1 --trajectories 500 --T 300 --no-free-flight ;;
    before) old before --trajectories "$n" ;;
    tail_before) old tail_before "${tail_args[@]}" ;;
    tail_after) run tail_after "${tail_args[@]}" --no-free-flight ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
