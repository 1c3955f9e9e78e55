"""Verlet-skin neighbour lists of batches of structures, cached per frame: one cache for every model.

A model keeps one :class:`NeighbourCache`. For each of the few most recently used frames (atomic
numbers, cell, pbc; least recently used evicted) it holds a batch: for every structure and every
*part* of the atoms, the pairs (i, j, S) closer than ``cutoff + skin`` (Å) at the positions of
their last search, with r_ij = x_j - x_i + S @ cell (S integer cell shifts), sorted by (i, j, S).
A part is a pair of atom sets (A, B), equal or disjoint (default: one part, all atoms with all
atoms). A structure's list of a part is searched again (vesin) only when the largest displacements
of its A atoms and of its B atoms since that search add up to more than the skin (one part of
all atoms: an atom moved more than skin / 2), so no pair can enter the cutoff unseen.

Batch membership follows the caller: :meth:`NeighbourCache.select` keeps some structures of a
frame's batch, in a new order, with their lists; a call with another batch size and no
``select`` searches the whole batch again. Structures with non-finite positions get empty lists
and ``finite`` False (the models return NaN for them).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import vesin

from pyscatter.models.base import ForceModel, Frame

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]
"""i (P,) int64, j (P,) int64, S (P, 3) int64 of one structure and part."""
Part = tuple[np.ndarray, np.ndarray]
"""Atom index sets (A, B) of a part: pairs with i in A and j in B."""
DEFAULT_FRAMES = 4
_NO_PAIRS: Pairs = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64))


def positions_array(frame: Frame, positions: torch.Tensor) -> np.ndarray:
    """Positions (B, N, 3) of ``frame``'s structures as a C-contiguous float64 array, Å; ValueError if misshapen."""
    if positions.ndim != 3 or positions.shape[1:] != (frame.n_atoms, 3):
        raise ValueError(f"positions must have shape (B, {frame.n_atoms}, 3), got {tuple(positions.shape)}")
    return np.ascontiguousarray(positions.detach().to("cpu", torch.float64).numpy())


class SelectsLists(ForceModel):
    """Base of the models that keep a :class:`NeighbourCache` as ``neighbours``: the protocol's ``select``."""

    neighbours: "NeighbourCache"

    def select(self, frame: Frame, keep) -> None:
        """Keep batch positions ``keep`` of the last call on ``frame``, in that order, with their lists."""
        self.neighbours.select(frame, keep)


def frame_key(frame: Frame) -> tuple:
    """What identifies a frame: atomic numbers, cell (Å) and pbc, exactly."""
    return frame.numbers.tobytes(), frame.cell.tobytes(), frame.pbc


def all_atoms(frame: Frame) -> list[Part]:
    """One part: every atom with every atom."""
    atoms = np.arange(frame.n_atoms)
    return [(atoms, atoms)]


@dataclass
class FrameLists:
    """The lists of one frame's batch of B structures.

    parts: the atom sets of each part. reference: per part, (B, N, 3) positions (Å) of each
    structure at its last search. pairs: per part, per structure. finite: (B,) positions of the
    last refresh all finite. changed: per part, the structures searched by the last refresh.
    state: what the model derives from these lists (its packed form); None after a new batch or a
    ``select``: the model then derives it from all structures.
    """

    frame: Frame
    parts: list[Part]
    reference: list[np.ndarray]
    pairs: list[list[Pairs]]
    finite: np.ndarray
    changed: list[np.ndarray] = field(default_factory=list)
    state: Any = None

    def __len__(self) -> int:
        return len(self.finite)

    def concatenated(self, part: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """offsets (B + 1,), i, j, S of all structures' pairs of ``part``, structure after structure."""
        pairs = self.pairs[part]
        offsets = np.concatenate([[0], np.cumsum([len(p[0]) for p in pairs])]).astype(np.int64)
        i, j, s = (np.concatenate([p[k] for p in pairs]) if pairs else _NO_PAIRS[k] for k in range(3))
        return offsets, i, j, s


class NeighbourCache:
    """Pairs closer than ``cutoff + skin`` (Å) of the batches of the ``max_frames`` most recent frames.

    full_list: every pair in both directions (else each once, i < j or i == j with S > 0 in
    lexicographic order). parts: the parts of a frame (default :func:`all_atoms`). ordered: pairs sorted
    by (i, j, S) in that canonical direction; False keeps vesin's own order for single-part lists (the
    summation order, hence the roundoff, of the ACE kernel's earlier releases).
    searches: structure-part lists searched so far (for tests and benchmarks).
    """

    def __init__(
        self, cutoff: float, skin: float, *, full_list: bool,
        parts: Callable[[Frame], list[Part]] = all_atoms, max_frames: int = DEFAULT_FRAMES, ordered: bool = True,
    ):
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.cutoff, self.skin, self.full_list, self.ordered = float(cutoff), float(skin), full_list, ordered
        self.parts, self.max_frames = parts, max_frames
        self.searches = 0
        self._search_list = vesin.NeighborList(cutoff=self.cutoff + self.skin, full_list=full_list, n_threads=1)
        self._frames: OrderedDict[tuple, FrameLists] = OrderedDict()

    def clear(self) -> None:
        self._frames.clear()

    def refresh(self, frame: Frame, x: np.ndarray) -> FrameLists:
        """The lists of ``frame`` for positions x (B, N, 3) Å, searched again where they may be stale."""
        key = frame_key(frame)
        lists = self._frames.get(key)
        finite = np.isfinite(x).all(axis=(1, 2))
        if lists is None or len(lists) != len(x):
            parts = self.parts(frame)
            lists = FrameLists(
                frame, parts, [np.full(x.shape, np.nan) for _ in parts], [[_NO_PAIRS] * len(x) for _ in parts], finite
            )
            self._frames[key] = lists
            while len(self._frames) > self.max_frames:
                self._frames.popitem(last=False)
        self._frames.move_to_end(key)
        lists.finite, lists.changed = finite, []
        for k, (a, b) in enumerate(lists.parts):
            moved = np.linalg.norm(x - lists.reference[k], axis=-1)
            travel = _largest(moved, a) + _largest(moved, b)
            stale = np.flatnonzero(~(travel <= self.skin))  # non-finite counts as moved
            for s in stale:
                lists.pairs[k][s] = self._search(frame, a, b, x[s]) if finite[s] else _NO_PAIRS
                lists.reference[k][s] = x[s]
            self.searches += int(finite[stale].sum())
            lists.changed.append(stale)
        return lists

    def select(self, frame: Frame, keep) -> None:
        """Keep structures ``keep`` (1-D integer array or tensor of batch positions of the last call on
        ``frame``), in that order, with their lists; the next call on ``frame`` holds those structures."""
        lists = self._frames.get(frame_key(frame))
        if lists is None:
            return
        keep = np.asarray(keep.cpu() if hasattr(keep, "cpu") else keep, dtype=np.int64).reshape(-1)
        lists.reference = [r[keep] for r in lists.reference]
        lists.pairs = [[p[k] for k in keep] for p in lists.pairs]
        lists.finite, lists.changed, lists.state = lists.finite[keep], [], None

    def _search(self, frame: Frame, a: np.ndarray, b: np.ndarray, x: np.ndarray) -> Pairs:
        same = a is b or np.array_equal(a, b)
        atoms = a if same else np.union1d(a, b)
        i, j, s = self._search_list.compute(
            points=x[atoms], box=frame.cell, periodic=list(frame.pbc), quantities="ijS"
        )
        i, j, s = atoms[i.astype(np.int64)], atoms[j.astype(np.int64)], s.astype(np.int64)
        if same and not self.ordered:
            return i, j, s
        if not same:  # pairs across the two sets, i in A
            in_a = np.isin(i, a)
            keep = in_a != np.isin(j, a)
            flip = keep & ~in_a
            i, j = np.where(flip, j, i)[keep], np.where(flip, i, j)[keep]
            s = np.where(flip[:, None], -s, s)[keep]
        elif not self.full_list:  # canonical direction of each pair
            positive = (s[:, 0] > 0) | ((s[:, 0] == 0) & ((s[:, 1] > 0) | ((s[:, 1] == 0) & (s[:, 2] > 0))))
            flip = (i > j) | ((i == j) & ~positive)
            i, j, s = np.where(flip, j, i), np.where(flip, i, j), np.where(flip[:, None], -s, s)
        order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
        return i[order], j[order], s[order]


def _largest(moved: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    """(B,) largest displacement among ``atoms`` of each structure (NaN if any is NaN)."""
    return (moved if len(atoms) == moved.shape[1] else moved[:, atoms]).max(axis=1, initial=0.0)
