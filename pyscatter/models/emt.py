"""ASE's effective-medium theory (EMT) as a batched, vectorised PyTorch force model (float64).

Reproduces :class:`ase.calculators.emt.EMT` with its default ``asap_cutoff=False``. Positions in Å,
energies in eV, forces in eV/Å (analytic). Pairs come from half lists with a Verlet skin per
species pair (:mod:`pyscatter.models.neighbours`; fast H atoms leave the Cu-Cu lists alone), laid
out as one padded row per batch slot and species pair. Per-atom sums are sequential segment sums
in a canonical pair order (species pair, atom i, atom j, cell shift), so a structure's result is
bitwise independent of the rest of the batch and of when its lists were searched (on CPU).
Design notes: ``docs/models.md``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from math import log, sqrt

import numpy as np
import torch
from ase import __version__ as ase_version
from ase.calculators.emt import beta as BETA
from ase.calculators.emt import parameters as EMT_PARAMETERS
from ase.data import atomic_numbers
from ase.units import Bohr

from pyscatter.models.base import Frame, ModelOutput, check_species
from pyscatter.models.neighbours import FrameLists, NeighbourCache, Part, SelectsLists

_PAD_DISTANCE = 1.0e3  # Å; padded pair slots join an atom to itself at this offset
_CHUNK_PAIRS = 65536  # pairs evaluated together: temporaries stay in cache


def _emt_cutoff() -> tuple[float, float, float]:
    """(rc Å, rc_list Å, acut 1/Å) of ASE's EMT with ``asap_cutoff=False``."""
    r1nn = BETA * max(p[1] for p in EMT_PARAMETERS.values()) * Bohr  # fcc 1st-neighbour distance
    rc = r1nn * 0.5 * (sqrt(3.0) + 2.0)  # between the 3rd and 4th neighbour shells
    acut = log(1.0 / 1e-4 - 1.0) / (2.0 * r1nn - rc)  # logistic cutoff is 1e-4 at the 4th shell
    return rc, rc + 0.5, acut


RC, RC_LIST, ACUT = _emt_cutoff()


@dataclass(frozen=True)
class _Element:
    """EMT parameters of one element in Å and eV (ASE's table converted from bohr)."""

    E0: float
    s0: float
    V0: float
    eta2: float
    kappa: float
    lam: float
    n0: float
    inv12gamma1: float
    neghalfv0overgamma2: float

    @classmethod
    def from_table(cls, row: tuple[float, ...]) -> _Element:
        """One row of ASE's table: E0 eV, s0 bohr, V0 eV, eta2 1/bohr, kappa 1/bohr, lambda 1/bohr, n0 1/bohr^3."""
        E0, s0, V0, eta2, kappa, lam, n0 = row
        s0, eta2, kappa = s0 * Bohr, eta2 / Bohr, kappa / Bohr
        shells = BETA * s0 * np.sqrt([1.0, 2.0, 3.0])  # fcc 1st-3rd neighbour distances
        weight = np.array([12, 6, 24]) / (1.0 + np.exp(ACUT * (shells - RC))) / 12.0
        gamma1 = weight @ np.exp(-eta2 * (shells - BETA * s0))
        gamma2 = weight @ np.exp(-kappa / BETA * (shells - BETA * s0))
        return cls(E0, s0, V0, eta2, kappa, lam / Bohr, n0 / Bohr**3, 1.0 / (12.0 * gamma1), -0.5 * V0 / gamma2)


def _elements(table: dict[str, tuple[float, ...]]) -> dict[int, _Element]:
    return {atomic_numbers[s]: _Element.from_table(row) for s, row in table.items()}


ELEMENTS: dict[int, _Element] = _elements(EMT_PARAMETERS)


def _parameter_hash(table: dict[str, tuple[float, ...]] = EMT_PARAMETERS) -> str:
    text = repr((sorted(table.items()), BETA, Bohr)).encode()
    return hashlib.sha256(text).hexdigest()[:12]


@dataclass(frozen=True)
class _PairType:
    """Constants of pairs (i, j) with element ``a`` at i and ``b`` at j, for exponents linear in r.

    i's density gets exp(ln_sigma1_i - eta2_b r) w, j's exp(ln_sigma1_j - eta2_a r) w; the pair
    energy is -(exp(ln_pair_i - kappa_b/beta r) + exp(ln_pair_j - kappa_a/beta r)) w, in eV.
    """

    same: bool
    eta2_a: float
    eta2_b: float
    kappa_a: float  # kappa / beta, 1/Å
    kappa_b: float
    ln_sigma1_i: float
    ln_sigma1_j: float
    ln_pair_i: float
    ln_pair_j: float

    @classmethod
    def of(cls, a: _Element, b: _Element) -> _PairType:
        chi = b.n0 / a.n0  # chi_ab of ASE
        return cls(
            same=a == b,
            eta2_a=a.eta2,
            eta2_b=b.eta2,
            kappa_a=a.kappa / BETA,
            kappa_b=b.kappa / BETA,
            ln_sigma1_i=b.eta2 * BETA * b.s0 + log(chi),
            ln_sigma1_j=a.eta2 * BETA * a.s0 - log(chi),
            ln_pair_i=b.kappa * b.s0 + log(-a.neghalfv0overgamma2 * chi),
            ln_pair_j=a.kappa * a.s0 + log(-b.neghalfv0overgamma2 / chi),
        )


class _PairGroup:
    """Padded half pair list of one species pair, one row per batch slot: (B, capacity).

    first/second: flat atom indices slot * N + i, rows sorted by (i, j, image); padding joins the
    slot's last atom to itself at ``_PAD_DISTANCE``. shift: (3, B, capacity) Cartesian image
    offsets in Å; the pair vector is x[second] - x[first] + shift. Per-atom sums over a chunk of
    rows are sequential segment sums in this canonical order (j-side via ``order_second``).
    """

    def __init__(self, kind: _PairType, reference: np.ndarray, n_slots: int, n_atoms: int, device: torch.device):
        self.kind, self.n_slots, self.n_atoms = kind, n_slots, n_atoms
        self.reference = torch.from_numpy(reference)  # (B, N, 3) Å at each slot's last search (the cache's)
        self.slot_last_atom = torch.arange(n_slots, device=device) * n_atoms + (n_atoms - 1)
        self._allocate(0)

    def _allocate(self, capacity: int) -> None:
        dev = self.slot_last_atom.device
        self.capacity = capacity
        self.rows_per_chunk = max(1, _CHUNK_PAIRS // max(capacity, 1))
        self.first = self.slot_last_atom[:, None].repeat(1, capacity)
        self.second = self.first.clone()
        self.shift = torch.zeros(3, self.n_slots, capacity, dtype=torch.float64, device=dev)
        self.shift[0] = _PAD_DISTANCE
        self.count_first = torch.zeros(self.n_slots, self.n_atoms, dtype=torch.long, device=dev)
        self.count_first[:, -1] = capacity
        self.count_second = self.count_first.clone()
        self.order_second = torch.empty(self.n_slots, capacity, dtype=torch.long, device=dev)
        kept = ["d0", "d1", "d2", "dsigma1_i", "dpair"] + ([] if self.kind.same else ["dsigma1_j"])
        self.kept = {name: torch.empty(self.n_slots, capacity, dtype=torch.float64, device=dev) for name in kept}
        self._index_rows(torch.arange(self.n_slots, device=dev))

    def chunks(self) -> list[slice]:
        """Slices of rows, each about ``_CHUNK_PAIRS`` pairs."""
        if self.capacity == 0:
            return []
        step = self.rows_per_chunk
        return [slice(s, min(s + step, self.n_slots)) for s in range(0, self.n_slots, step)]

    def fill(
        self, slots: torch.Tensor, row: torch.Tensor, i: torch.Tensor, j: torch.Tensor, shift: torch.Tensor
    ) -> None:
        """Replace the rows of ``slots`` by pairs (row index into ``slots``, i, j, shift (P, 3) Å) sorted by row."""
        counts = torch.bincount(row, minlength=len(slots))
        needed = int(counts.max()) if len(counts) else 0
        if needed > self.capacity:
            old = (self.capacity, self.first, self.second, self.shift)
            self._allocate(needed + needed // 20)
            self.first[:, : old[0]] = old[1]
            self.second[:, : old[0]] = old[2]
            self.shift[:, :, : old[0]] = old[3]
            unchanged = torch.ones(self.n_slots, dtype=torch.bool, device=slots.device)
            unchanged[slots] = False
            self._index_rows(torch.nonzero(unchanged).flatten())
        self.first[slots] = self.slot_last_atom[slots, None]
        self.second[slots] = self.slot_last_atom[slots, None]
        self.shift[:, slots] = 0.0
        self.shift[0, slots] = _PAD_DISTANCE
        column = torch.arange(len(row), device=row.device) - (torch.cumsum(counts, 0) - counts)[row]
        atom0 = self.slot_last_atom[slots[row]] - (self.n_atoms - 1)
        self.first[slots[row], column] = atom0 + i
        self.second[slots[row], column] = atom0 + j
        self.shift[:, slots[row], column] = shift.T
        self._index_rows(slots)

    def _index_rows(self, slots: torch.Tensor) -> None:
        """Segment lengths and the j-side order (stable: canonical within each atom) of rows ``slots``."""
        if len(slots) == 0 or self.capacity == 0:
            return
        n = self.n_atoms
        atom0 = (self.slot_last_atom[slots] - (n - 1))[:, None]
        offsets = torch.arange(len(slots), device=slots.device)[:, None] * n
        for atoms, counts in ((self.first, self.count_first), (self.second, self.count_second)):
            local = (atoms[slots] - atom0 + offsets).flatten()
            counts[slots] = torch.bincount(local, minlength=len(slots) * n).view(len(slots), n)
        order = torch.sort(self.second[slots], dim=1, stable=True).indices
        chunk_row = slots % self.rows_per_chunk  # position of the row within its chunk
        self.order_second[slots] = order + (chunk_row * self.capacity)[:, None]

    def sum_first(self, rows: slice, values: torch.Tensor) -> torch.Tensor:
        """Per-atom sums over i of the pair values of a chunk of rows; shape (rows * N,)."""
        return torch.segment_reduce(values, "sum", lengths=self.count_first[rows].view(-1), unsafe=True)

    def sum_second(self, rows: slice, values: torch.Tensor) -> torch.Tensor:
        """Per-atom sums over j of the pair values of a chunk of rows; shape (rows * N,)."""
        ordered = values.index_select(0, self.order_second[rows].view(-1))
        return torch.segment_reduce(ordered, "sum", lengths=self.count_second[rows].view(-1), unsafe=True)

    def sum_rows(self, rows: slice, values: torch.Tensor) -> torch.Tensor:
        """Per-slot sums of the pair values of a chunk of rows; shape (rows,)."""
        lengths = torch.full((rows.stop - rows.start,), self.capacity, device=values.device)
        return torch.segment_reduce(values, "sum", lengths=lengths, unsafe=True)


def _species_pairs(frame: Frame) -> list[Part]:
    """The parts of an EMT frame: (atoms of element a, atoms of element b) for a <= b by atomic number."""
    elements = sorted({int(z) for z in frame.numbers})
    atoms = [np.flatnonzero(frame.numbers == z) for z in elements]
    return [(atoms[a], atoms[b]) for a in range(len(elements)) for b in range(a, len(elements))]


class _Groups:
    """The padded pair groups (one per species pair, :func:`_species_pairs` order) of a frame's batch, and
    per-atom EMT parameters repeated over the slots."""

    def __init__(self, lists: FrameLists, device: torch.device, elements: dict[int, _Element]):
        frame, n_slots = lists.frame, len(lists)
        self.cell = torch.as_tensor(frame.cell, dtype=torch.float64, device=device)
        self.groups = [
            _PairGroup(
                _PairType.of(elements[int(frame.numbers[a[0]])], elements[int(frame.numbers[b[0]])]),
                reference, n_slots, frame.n_atoms, device,
            )
            for (a, b), reference in zip(lists.parts, lists.reference)
        ]
        atom_elements = [elements[int(z)] for z in frame.numbers]
        self.atom_parameters = {
            name: torch.tensor([getattr(e, name) for e in atom_elements], dtype=torch.float64, device=device).repeat(
                n_slots
            )
            for name in ("E0", "V0", "eta2", "kappa", "lam", "inv12gamma1")
        }
        for k in range(len(self.groups)):
            self.fill(lists, k, np.arange(n_slots))

    def fill(self, lists: FrameLists, k: int, slots: np.ndarray) -> None:
        """Copy the cached pairs of species pair ``k`` of ``slots`` into its padded group."""
        if len(slots) == 0:
            return
        pairs = [lists.pairs[k][s] for s in slots]
        group, device = self.groups[k], self.cell.device
        counts = [len(i) for i, _, _ in pairs]
        row = torch.as_tensor(np.repeat(np.arange(len(slots)), counts), device=device)
        i, j, image = (torch.as_tensor(np.concatenate([p[c] for p in pairs]), device=device) for c in range(3))
        shift = _cartesian(image.to(torch.float64), self.cell)
        group.fill(torch.as_tensor(slots, device=device), row, i, j, shift)


def _cartesian(image: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """``image @ cell`` for rows (..., 3), summed in a fixed order (bitwise reproducible, no BLAS)."""
    return image[..., 0:1] * cell[0] + image[..., 1:2] * cell[1] + image[..., 2:3] * cell[2]


class EMTModel(SelectsLists):
    """ASE's EMT for batches of structures sharing a frame; see the module docstring.

    skin: Å added to ``rc_list`` for the cached neighbour lists.
    parameters: rows of ASE's EMT table (symbol -> (E0 eV, s0 bohr, V0 eV, eta2 1/bohr, kappa 1/bohr, lambda 1/bohr,
    n0 1/bohr^3)) replacing ASE's for those elements, e.g. a deliberately perturbed model; the cutoff stays ASE's.
    The identity then hashes the changed table.
    default_batch_size: systems per process the engine integrates together (vectorised model).
    """

    name = "emt"
    default_batch_size = 256
    species: frozenset[int] = frozenset(ELEMENTS)
    cutoff: float = RC_LIST
    dtype = torch.float64
    identity = f"emt:ase-{ase_version}:{_parameter_hash()}"

    def __init__(self, skin: float = 1.0, parameters: dict[str, tuple[float, ...]] | None = None):
        self.skin = float(skin)
        self.parameters = None if parameters is None else {s: tuple(map(float, row)) for s, row in parameters.items()}
        self.elements = ELEMENTS if parameters is None else _elements({**EMT_PARAMETERS, **self.parameters})
        if parameters is not None:
            self.identity = f"emt:ase-{ase_version}:{_parameter_hash({**EMT_PARAMETERS, **self.parameters})}"
        self.neighbours = NeighbourCache(RC_LIST, self.skin, full_list=False, parts=_species_pairs)
        self._neighbours: _Groups | None = None  # the groups of the last call

    def __call__(self, frame: Frame, positions: torch.Tensor, compute_forces: bool = True) -> ModelOutput:
        """Energies (B,) eV and forces (B, N, 3) eV/Å of positions (B, N, 3) Å; NaN for a structure with
        non-finite positions or two atoms at one place."""
        x = positions.detach().to(torch.float64)
        n_slots, n_atoms, _ = x.shape
        if n_atoms != frame.n_atoms:
            raise ValueError(f"positions hold {n_atoms} atoms, the frame {frame.n_atoms}")
        lists = self.neighbours.refresh(frame, np.ascontiguousarray(x.cpu().numpy()))
        if lists.state is None or lists.state.cell.device != x.device:
            check_species(self, frame.numbers)
            lists.state = _Groups(lists, x.device, self.elements)
        else:
            for k, stale in enumerate(lists.changed):
                lists.state.fill(lists, k, stale)
        self._neighbours = lists.state
        bad = torch.as_tensor(~lists.finite, device=x.device)
        out = _evaluate(lists.state, torch.where(bad[:, None, None], 0.0, x), compute_forces, bad)
        out.energies.masked_fill_(bad, float("nan"))
        if out.forces is not None:
            out.forces.masked_fill_(bad[:, None, None], float("nan"))
        return out


def _pass_one(
    group: _PairGroup, rows: slice, xyz: torch.Tensor, keep: bool, bad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Density terms on i and j and pair energies (eV) of a chunk of rows; marks in ``bad`` (B,) the
    slots with a pair at zero distance.

    With ``keep``, stores in ``group.kept`` what pass two needs: the pair vectors (Å) and,
    per 1/r, the r derivatives of the density terms and of the pair energy.
    """
    k = group.kind
    first, second = group.first[rows].view(-1), group.second[rows].view(-1)
    d = [
        xyz[c].index_select(0, second).sub_(xyz[c].index_select(0, first)).add_(group.shift[c, rows].view(-1))
        for c in range(3)
    ]
    r2 = d[0] * d[0]
    r2 += d[1] * d[1]
    r2 += d[2] * d[2]
    r = r2.sqrt_()
    bad[rows] |= (r == 0.0).view(rows.stop - rows.start, -1).any(1)
    w = (r - RC).mul_(ACUT).exp_().add_(1.0).reciprocal_().masked_fill_(r >= RC_LIST, 0.0)
    sigma1_i = (r * -k.eta2_b).add_(k.ln_sigma1_i).exp_().mul_(w)
    pair_i = (r * -k.kappa_b).add_(k.ln_pair_i).exp_().mul_(w)
    if k.same:
        sigma1_j, pair = sigma1_i, pair_i * 2.0
    else:
        sigma1_j = (r * -k.eta2_a).add_(k.ln_sigma1_j).exp_().mul_(w)
        pair_j = (r * -k.kappa_a).add_(k.ln_pair_j).exp_().mul_(w)
        pair = pair_i + pair_j
    if keep:
        kept = {name: t[rows].view(-1) for name, t in group.kept.items()}
        dlnw = (w - 1.0).mul_(ACUT)  # (dw/dr) / w, 1/Å
        inv_r = r.reciprocal()
        for c in range(3):
            kept[f"d{c}"].copy_(d[c])
        torch.mul(sigma1_i, (dlnw - k.eta2_b).mul_(inv_r), out=kept["dsigma1_i"])
        if k.same:
            torch.mul(pair, (dlnw - k.kappa_b).mul_(inv_r), out=kept["dpair"])
        else:
            torch.mul(sigma1_j, (dlnw - k.eta2_a).mul_(inv_r), out=kept["dsigma1_j"])
            dpair = pair_i.mul_(dlnw - k.kappa_b).add_(pair_j.mul_(dlnw - k.kappa_a))
            torch.mul(dpair, inv_r, out=kept["dpair"])
    return sigma1_i, sigma1_j, pair


def _evaluate(nl: _Groups, x: torch.Tensor, compute_forces: bool, bad: torch.Tensor) -> ModelOutput:
    """Energies (B,) eV and forces (B, N, 3) eV/Å of x (B, N, 3) Å; marks in ``bad`` (B,) the slots with
    two atoms at one place."""
    n_slots, n_atoms, _ = x.shape
    dev = x.device
    xyz = x.reshape(-1, 3).T.contiguous()  # (3, B*N)

    # pass 1: densities sigma1 and pair (sigma2) energies
    sigma1 = torch.zeros(n_slots * n_atoms, dtype=torch.float64, device=dev)
    energies = torch.zeros(n_slots, dtype=torch.float64, device=dev)
    for group in nl.groups:
        for rows in group.chunks():
            sigma1_i, sigma1_j, pair = _pass_one(group, rows, xyz, compute_forces, bad)
            atoms = slice(rows.start * n_atoms, rows.stop * n_atoms)
            sigma1[atoms] += group.sum_first(rows, sigma1_i)
            sigma1[atoms] += group.sum_second(rows, sigma1_j)
            energies[rows] -= group.sum_rows(rows, pair)

    # per atom: neutral-sphere radius ds, cohesive energy and its sigma1 derivative
    a = nl.atom_parameters
    embedded = sigma1 > 0.0  # ASE leaves atoms without neighbours at -E0
    sigma1_safe = torch.where(embedded, sigma1, 1.0)
    ds = -torch.log(sigma1_safe * a["inv12gamma1"]) / (BETA * a["eta2"])
    lam_ds = a["lam"] * ds
    exp_lam_ds = torch.exp(-lam_ds)
    six_v0_exp = 6.0 * a["V0"] * torch.exp(-a["kappa"] * ds)
    atom_energy = torch.where(embedded, a["E0"] * (1.0 + lam_ds) * exp_lam_ds + six_v0_exp, 0.0) - a["E0"]
    per_slot = torch.full((n_slots,), n_atoms, device=dev)
    energies += torch.segment_reduce(atom_energy, "sum", lengths=per_slot, unsafe=True)
    if not compute_forces:
        return ModelOutput(energies, None)
    deds = -a["E0"] * a["lam"] * lam_ds * exp_lam_ds - a["kappa"] * six_v0_exp
    deds = torch.where(embedded, deds / (-BETA * a["eta2"] * sigma1_safe), 0.0)  # dE/dsigma1, eV

    # pass 2: F_i += (dE/dr / r) (x_j - x_i), F_j -= the same
    forces = torch.zeros(3, n_slots * n_atoms, dtype=torch.float64, device=dev)
    for group in nl.groups:
        for rows in group.chunks():
            kept = {name: t[rows].view(-1) for name, t in group.kept.items()}
            atoms = slice(rows.start * n_atoms, rows.stop * n_atoms)
            deds_i = deds.index_select(0, group.first[rows].view(-1))
            deds_j = deds.index_select(0, group.second[rows].view(-1))
            if group.kind.same:
                g = deds_i.add_(deds_j).mul_(kept["dsigma1_i"])
            else:
                g = deds_i.mul_(kept["dsigma1_i"]).add_(deds_j.mul_(kept["dsigma1_j"]))
            g -= kept["dpair"]
            for c in range(3):
                f = g * kept[f"d{c}"]
                forces[c, atoms] += group.sum_first(rows, f)
                forces[c, atoms] -= group.sum_second(rows, f)
    return ModelOutput(energies, forces.T.reshape(n_slots, n_atoms, 3))
