"""High-symmetry impact sites of the ideal fcc metal slabs, and the site class of a lateral impact point.

An impact point (the molecule's centre of mass, projected on the surface) belongs to the class of its
nearest high-symmetry site of the ideal (bulk-terminated) slab, laterally and with periodic images:

- (111): top (above a top-layer atom), bridge (midway between nearest top-layer neighbours),
  fcc hollow (above a third-layer atom), hcp hollow (above a second-layer atom);
- (100): top, bridge, hollow (above a second-layer atom);
- (110): top, short bridge (along the close-packed rows, a/√2), long bridge (across the rows, a),
  hollow (above a second-layer atom, in the trough);
- (211): by the position across the step only, the nearest of its three atomic rows: step edge
  (the highest row), terrace (the middle row), step foot (the lowest row, at the inner corner).

The classes are those of the facet whatever the metal; a slab file of one of these facets gets them too (its
reactivity map assumes the built slabs' 3x3 (211: 1x3) primitive cells). Lengths in Å; fractional coordinates
refer to the slab's surface cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyscatter.initial.surface import Slab, layer_index

SITE_CLASSES = {
    "111": ("top", "bridge", "fcc hollow", "hcp hollow"),
    "100": ("top", "bridge", "hollow"),
    "110": ("top", "short bridge", "long bridge", "hollow"),
    "211": ("step edge", "terrace", "step foot"),
}
"""Site classes of each facet, in the order of :attr:`SurfaceSites.classes`."""

PRIMITIVE_REPEATS = {"111": (3, 3), "100": (3, 3), "110": (3, 3), "211": (1, 3)}
"""Primitive surface cells along each of the slab cell's two lateral vectors."""

_IMAGES = np.array([(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)], dtype=np.float64)


@dataclass(frozen=True)
class SurfaceSites:
    """The high-symmetry sites of one ideal slab.

    surface: facet.  cell: (2, 2) lateral cell vectors as rows, Å.  points: (M, 2) lateral site
    positions, Å.  labels: (M,) index into ``classes`` of each point.  classes: class names.
    top_atoms: (K, 2) lateral positions of the top-layer atoms, Å ((211): the step-edge row).
    metal: the slab's metal.  across: (211) only, the unit vector across the step (rows are compared along it alone).
    """

    surface: str
    cell: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    top_atoms: np.ndarray
    metal: str = "Cu"
    across: np.ndarray | None = None

    def classify(self, fractional: np.ndarray) -> np.ndarray:
        """Site class names (n,) of impact points given in fractional coordinates (n, 2) of the cell."""
        xy = np.asarray(fractional, dtype=np.float64).reshape(-1, 2) @ self.cell
        shifts = _IMAGES @ self.cell  # nearest image among the neighbouring cells (exact for 3x3 cells)
        d = xy[:, None, None, :] - self.points[None, :, None, :] - shifts[None, None, :, :]
        if self.across is not None:
            distance = np.abs(d @ self.across)
        else:
            distance = np.linalg.norm(d, axis=-1)
        nearest = distance.min(axis=2).argmin(axis=1)
        return np.array(self.classes, dtype=object)[self.labels[nearest]]


def surface_sites(slab: Slab) -> SurfaceSites:
    """The high-symmetry sites of ``slab`` (ideal: built by :func:`~pyscatter.initial.surface.build_slab`, or a slab
    file of a facet of :data:`SITE_CLASSES`)."""
    positions = slab.atoms.positions
    layers = layer_index(positions[:, 2])
    top = layers.max()
    cell = slab.atoms.cell.array[:2, :2].copy()
    layer_xy = [positions[layers == top - k, :2] for k in range(3)]
    classes = SITE_CLASSES[slab.surface]
    if slab.surface == "211":
        along = positions[slab.top_layer[1], :2] - positions[slab.top_layer[0], :2]
        across = np.array([along[1], -along[0]]) / np.linalg.norm(along)
        points = np.concatenate(layer_xy)
        labels = np.repeat(np.arange(3), [len(xy) for xy in layer_xy])
        return SurfaceSites(slab.surface, cell, points, labels, classes, layer_xy[0], slab.metal, across)
    tops = layer_xy[0]
    pairs = _pair_midpoints(tops, cell)
    sets = {"top": tops, "hollow": layer_xy[1], "hcp hollow": layer_xy[1], "fcc hollow": layer_xy[2]}
    nearest = min(pairs)
    if slab.surface == "110":
        sets["short bridge"] = pairs[nearest]
        sets["long bridge"] = pairs[min(d for d in pairs if d > nearest * 1.2)]
    else:
        sets["bridge"] = pairs[nearest]
    points = np.concatenate([sets[name] for name in classes])
    labels = np.repeat(np.arange(len(classes)), [len(sets[name]) for name in classes])
    return SurfaceSites(slab.surface, cell, points, labels, classes, tops, slab.metal)


def _pair_midpoints(xy: np.ndarray, cell: np.ndarray) -> dict[float, np.ndarray]:
    """Midpoints (Å) of the pairs of points ``xy`` (nearest images), grouped by pair distance (rounded to 1 mÅ)."""
    shifts = _IMAGES @ cell
    d = xy[None, :, None, :] + shifts[None, None] - xy[:, None, None, :]  # (i, j, image, 2)
    length = np.linalg.norm(d, axis=-1).round(3)
    groups: dict[float, list[np.ndarray]] = {}
    for i, j, k in zip(*np.nonzero(length > 0)):
        groups.setdefault(float(length[i, j, k]), []).append(xy[i] + d[i, j, k] / 2)
    return {key: np.array(value) for key, value in groups.items()}
