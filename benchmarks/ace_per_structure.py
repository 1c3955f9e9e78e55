"""ms per structure (energy+forces, process CPU time, best of repeats) of ``h2cu-ace`` at batch 1 and 16 on the
925 K Cu(111) slab with H2 near the surface (``contact``, as the asv suite) and 7 Å above it (``far``).

Uses public API only, so that the same script times any checkout: run it alternately against two (interleaved,
min of several runs on a shared machine), e.g. ::

    for k in 1 2 3; do for tree in ../old .; do PYTHONPATH=$tree python benchmarks/ace_per_structure.py \\
        --label $tree --out /tmp/ace_$k_$(basename $tree).json; done; done
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "asv_bench"))
from benchmarks import MOVE, h2_batch  # noqa: E402


def ms_per_structure(model, frame, x: np.ndarray, repeats: int, rng: np.random.Generator) -> float:
    model(frame, torch.as_tensor(x))
    best = np.inf
    for _ in range(repeats):
        moved = torch.as_tensor(x + rng.uniform(-MOVE, MOVE, x.shape))
        start = time.process_time()
        model(frame, moved)
        best = min(best, time.process_time() - start)
    return 1e3 * best / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import pyscatter
    from pyscatter.models import load_model

    model = load_model("h2cu-ace")
    rng = np.random.default_rng(0)
    rows = {}
    for kind, heights in (("contact", (1.0, 3.0)), ("far", (7.0, 7.0))):
        for batch in (1, 16):
            frame, x = h2_batch(batch, heights)
            rows[f"{kind} B={batch}"] = round(ms_per_structure(model, frame, x, args.repeats, rng), 4)
    result = {"label": args.label, "pyscatter": str(Path(pyscatter.__file__).parent), "ms_per_structure": rows,
              "load_average": list(os.getloadavg())}
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
