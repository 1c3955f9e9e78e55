#!/bin/bash
# The validation's reference (MACE teacher) runs on one GPU until a deadline, several processes sharing it.
#
#   bash benchmarks/validate_on_gpu.sh OUT SECONDS [DEVICE]
#
# First benchmarks/teacher_gpu.py (agreement with the CPU, ms per structure; OUT/teacher_gpu.json). Then one process
# per (condition, collision energy) of JOBS, each on its own copy of the committed run directory
# (benchmarks/results/validation/reference_Cu<condition>) resumed with `validate_model.py reference --device DEVICE`,
# starting trajectories for two thirds of what is left of SECONDS, then finishing those started, and stopped (losing
# those still in flight) SECONDS after this script started. Their stores come back checkpointed in OUT/stores.tar, their
# logs in OUT/logs.tar; add them to the committed stores with
#   python benchmarks/validate_model.py merge --merge-from DIR/*/   (DIR: where stores.tar was unpacked)
# A stopped process loses only its unfinished trajectories: they leave gaps that a later run fills (the report counts
# complete index prefixes only). TEACHER: the model file (default ../shared/models/h2cu_mace_stark2023.model).
set -u
out=${1:?OUT folder}; seconds=${2:?SECONDS}; device=${3:-cuda}
root=$(cd "$(dirname "$0")/.." && pwd)
teacher=$(realpath -m "${TEACHER:-$root/../shared/models/h2cu_mace_stark2023.model}")  # as validate_model.py names it
work=$(mktemp -d)
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# condition energy(eV) trajectories-per-energy batch-size (one process each); the environment's JOBS replaces them
JOBS=${JOBS:-"211 0.3 2000 256
211 0.45 2000 256
211 0.6 2000 256
211 0.85 2000 256
111v0 0.5 600 128
111v0 0.6 600 128
111v0 0.75 600 128
111v0 0.9 600 128"}
mkdir -p "$out"
if [ "${CHECK:-1}" = 1 ]; then  # CHECK=0 skips it
    timeout 150 python3 "$root/benchmarks/teacher_gpu.py" --teacher "$teacher" --device "$device" \
        --out "$out/teacher_gpu.json" 2>&1 | grep -v -i -E "warn|visitor|constants.pt|cuequivariance"
fi
left=$((seconds - SECONDS - 40))  # 40 s kept to stop, checkpoint and pack
echo "trajectories for ${left} s"
while read -r condition energy n batch; do
    copy="$work/$condition-$energy"
    mkdir -p "$copy"
    cp -r "$root/benchmarks/results/validation/reference_Cu$condition" "$copy/"
    rm -f "$copy/reference_Cu$condition/.lock"
    timeout -s INT "$left" python3 "$root/benchmarks/validate_model.py" reference --reference "$teacher" \
        --facets "$condition" --energies "$energy" --reference-trajectories "$n" --device "$device" \
        --batch-size "$batch" --start-for $((left * 2 / 3)) --out "$copy" > "$work/$condition-$energy.log" 2>&1 &
done <<< "$JOBS"
wait
python3 - "$work" <<'EOF'
import sqlite3, sys
from pathlib import Path
for db in sorted(Path(sys.argv[1]).glob("*/*/results.sqlite")):
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print(db.parent.parent.name, " ".join(f"{e}: {n}" for e, n in c.execute(
            "SELECT collision_energy, COUNT(*) FROM trajectories t JOIN conditions c ON c.id = t.condition_id "
            "GROUP BY collision_energy")))
EOF
tar -C "$work" -cf "$out/stores.tar" --exclude='*.sqlite-wal' --exclude='*.sqlite-shm' --exclude='.lock' \
    $(cd "$work" && ls -d */)
tar -C "$work" -cf "$out/logs.tar" $(cd "$work" && ls *.log)
tail -n 3 "$work"/*.log
rm -rf "$work"
