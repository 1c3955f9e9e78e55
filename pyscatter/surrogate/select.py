"""Stage 2, ``select``: k-means on a structural descriptor of the H atoms picks the training frames.

The frame nearest each centroid trains; a random disjoint set of the other frames (which include
reactive ones) is held out (``selection.npz``). Distances in Å.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyscatter.surrogate.frames import load_frames, save_npz
from pyscatter.surrogate.settings import Progress, SurrogateError, SurrogateSettings

def descriptor(numbers: np.ndarray, cell: np.ndarray, positions: np.ndarray, top_height: np.ndarray) -> np.ndarray:
    """Structural descriptor of the H atoms, (M, 9): H-H distance, both H heights above the top
    layer (sorted), and each H atom's three shortest H-Cu distances (minimum image in the surface
    plane; sorted within each atom, atoms ordered by height). Å."""
    h = np.flatnonzero(numbers == 1)
    cu = np.flatnonzero(numbers == 29)
    if len(h) != 2:
        raise SurrogateError(f"frames must hold exactly two H atoms, got {len(h)}")
    inverse = np.linalg.inv(cell)

    def lateral_minimum_image(d: np.ndarray) -> np.ndarray:
        frac = d @ inverse
        frac[..., :2] -= np.round(frac[..., :2])
        return np.linalg.norm(frac @ cell, axis=-1)

    hh = lateral_minimum_image(positions[:, h[1]] - positions[:, h[0]])
    heights = positions[:, h, 2] - top_height[:, None]
    d = positions[:, h, None, :] - positions[:, None, cu, :]  # (M, 2, Ncu, 3)
    dist = np.sort(lateral_minimum_image(d), axis=-1)[..., :3]  # (M, 2, 3)
    order = np.argsort(heights, axis=1)
    rows = np.arange(len(positions))[:, None]
    return np.column_stack([hh, heights[rows, order], dist[rows, order].reshape(len(positions), 6)])


def select(directory: Path, settings: SurrogateSettings, progress: Progress) -> None:
    """Stage 2: k-means selection of training frames and a disjoint random held-out set."""
    from scipy.cluster.vq import kmeans2

    path = directory / "selection.npz"
    if path.exists():
        return
    frames = load_frames(directory)
    if not frames:
        raise SurrogateError(f"{directory}: no teacher frames to select from")
    x = np.concatenate([descriptor(f.numbers, f.cell, f.positions, f.top_height) for f in frames])
    total = len(x)
    n_train = min(settings.n_train, total)
    z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-12)
    centroids, label = kmeans2(z, n_train, seed=settings.seed, minit="++")
    train = []
    for c in range(len(centroids)):
        members = np.flatnonzero(label == c)
        if len(members):
            train.append(members[np.argmin(((z[members] - centroids[c]) ** 2).sum(axis=1))])
    train = np.unique(train)
    rest = np.setdiff1d(np.arange(total), train)
    if len(rest) == 0:
        raise SurrogateError(f"{directory}: all {total} frames were selected for training; none left to hold out")
    rng = np.random.default_rng(settings.seed)
    test = np.sort(rng.choice(rest, size=min(settings.n_test, len(rest)), replace=False))
    save_npz(path, train=train, test=test)
    progress(f"select: {len(train)} training frames (k-means of {total}), {len(test)} held out")
