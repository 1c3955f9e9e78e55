"""Free flight: the molecule integrated alone while it is out of the model's range of every slab atom.

While the molecule is out of the model's range of every slab atom, slab and molecule do not interact: the
energy is E(slab) + E(molecule) and the forces separate.

- *Approach* (:class:`Approach`). The molecule is integrated alone (2-atom calls of the same model, same
  integrator) until one of its atoms comes within the model's ``cutoff`` of an atom (minimum image) of the
  thermal slab snapshot its trajectory drew (:class:`Contact`); it then joins that slab. NVE evolution of a
  canonical slab stays canonical, so the slab at first contact is distributed as the snapshot.
- *Exit* (:func:`exits`). A receding molecule with no atom within ``cutoff`` of a slab atom, which cannot come back
  within it before its centre of mass reaches the scatter height (:func:`stays_clear`: bond within its turning
  points, bond direction in the plane normal to its conserved angular momentum and turning at a bounded rate,
  against the slab atoms and their periodic images as they stand, :func:`nearby_images`), is scattered: its final
  state is that of the free molecule, and its end time is when its centre of mass reaches the scatter height at
  its constant velocity (trapped if after ``max_time``).
- The trajectory clock counts the skipped time; ``force_calls`` counts slab+molecule structures only.

Positions Å, velocities ASE units, masses amu, times in ASE units unless named in fs.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from ase.units import fs

from pyscatter.conditions import Termination
from pyscatter.engine import verlet
from pyscatter.engine.batch import Batch, Draws, InitialConditions, Observer, Start, slab_atoms
from pyscatter.engine.geometry import minimum_image
from pyscatter.engine.termination import StoppingCriteria
from pyscatter.models.base import ForceModel, Frame
from pyscatter.outcomes import Outcome, TrajectoryResult

EXIT_CHECK_STEPS = 10
"""A receding molecule's exit (:func:`stays_clear`) is tested on every this-many-th step of its trajectory
(a trajectory's own clock, so results do not depend on the batch): the test costs far more than a step's
bookkeeping, and a later release costs at most this many structure calls."""
EXIT_TIMES = 64
"""Times at which :func:`stays_clear` evaluates its bound over the horizon (a Lipschitz margin covers between)."""


@dataclass(frozen=True)
class Contact:
    """Whether a molecule is within the model's ``cutoff`` (Å) of a slab, minimum image in the cell of ``crit``."""

    cutoff: float
    crit: StoppingCriteria

    def __call__(self, molecules, slabs) -> torch.Tensor:
        """(B,) whether any atom of molecules (B, 2, 3) is within the cutoff of any atom of slabs (B, M, 3)."""
        molecules, slabs = torch.as_tensor(molecules), torch.as_tensor(slabs)
        d = minimum_image(slabs[:, None] - molecules[:, :, None], self.crit.cell, self.crit.periodic, self.crit.inverse_cell)
        return (d.norm(dim=-1) < self.cutoff).flatten(1).any(1)


class Approach:
    """Systems ready to join the slab batch after their molecule's free approach; those that end on the way (failed,
    dissociated, trapped) collect in ``finished``."""

    def __init__(self, model: ForceModel, initial: InitialConditions, draws: Draws, batch_size: int, dt: float,
                 termination: Termination, contact: Contact, observer: Observer | None = None):
        self.initial, self.draws, self.dt, self.termination, self.capacity = initial, draws, dt, termination, batch_size
        self.ready: deque[Start] = deque()
        self.finished: list[TrajectoryResult] = []
        mol = list(initial.molecule)
        frame = Frame(initial.frame.numbers[mol], initial.frame.cell, initial.frame.pbc)
        masses = torch.as_tensor(initial.masses[mol], dtype=torch.float64)
        self.batch = Batch(model, verlet.Dynamics(frame, masses, torch.ones(2, dtype=torch.bool), dt * fs),
                           termination, observer, free=True)
        self.slab_atoms = slab_atoms(initial)
        self.contact = contact
        self.max_steps = termination.max_steps(dt)

    def take(self, n: int) -> list[Start]:
        """Up to ``n`` systems ready to join the slab (fewer only once every index is drawn and finished)."""
        while len(self.ready) < n and not (self.draws.exhausted and self.batch.size == 0):
            self._step()
        return [self.ready.popleft() for _ in range(min(n, len(self.ready)))]

    def _step(self) -> None:
        """Refill the free molecules, move those already in range to ``ready``, then step the rest once."""
        mol = list(self.initial.molecule)
        free = self.batch
        newcomers = []
        for start in self.draws.take(self.capacity - free.size):
            if self.contact(start.positions[None, mol], start.positions[None, self.slab_atoms])[0]:
                self.ready.append(start)
            else:
                newcomers.append(Start(start.index, start.positions[mol], start.velocities[mol],
                                       slab=(start.positions, start.velocities),
                                       slab_top=float(start.positions[self.slab_atoms, 2].max())))
        if newcomers:
            free.place(None, newcomers)
        if free.size == 0:
            return
        failed = free.step()
        s = free.state
        a, b = s.positions[:, 0], s.positions[:, 1]
        bond = torch.linalg.norm(b - a, dim=-1)
        # contact needs an atom less than the cutoff above the slab's highest atom: test the others no further
        near = s.positions[:, :, 2].amin(1) - self.contact.cutoff < torch.tensor([start.slab_top for start in free.starts])
        entered = torch.zeros_like(near)
        if near.any():
            near = torch.nonzero(near).flatten()
            slabs = np.stack([free.starts[slot].slab[0][self.slab_atoms] for slot in near.tolist()])
            entered[near] = self.contact(s.positions[near], slabs)
        dissociated = bond > self.termination.dissociation_distance
        trapped = s.steps >= self.max_steps
        done = failed | entered | dissociated | trapped
        if not done.any():
            return
        for slot in torch.nonzero(done).flatten().tolist():
            if failed[slot]:
                self.finished.append(free.result(slot, Outcome.FAILED, self.dt, failure=free.failure(slot)))
            elif dissociated[slot]:
                self.finished.append(free.result(slot, Outcome.DISSOCIATED, self.dt))
            elif entered[slot]:
                self.ready.append(self._join(slot))
            else:
                self.finished.append(free.result(slot, Outcome.TRAPPED, self.dt))
        free.keep(torch.nonzero(~done).flatten())

    def _join(self, slot: int) -> Start:
        """The free molecule of ``slot`` above the slab snapshot its trajectory drew."""
        free, mol = self.batch, list(self.initial.molecule)
        start = free.starts[slot]
        positions, velocities = (x.copy() for x in start.slab)
        positions[mol] = free.state.positions[slot].numpy()
        velocities[mol] = free.state.velocities[slot].numpy()
        return Start(start.index, positions, velocities, int(free.state.steps[slot]),
                     float(free.total[slot] - free.reference[slot]), float(free.max_error[slot]))


def exits(state: verlet.MDState, running: torch.Tensor, height: torch.Tensor, vz: torch.Tensor,
          initial: InitialConditions, contact: Contact, dt: float) -> dict[int, int]:
    """The slots of ``state`` (slab + molecule systems) whose receding molecule leaves for good (:func:`stays_clear`),
    each with the steps (at ``dt`` fs) its centre of mass takes to the scatter height of ``contact.crit``.

    Tested for ``running`` systems moving up (``vz`` > 0; ``height`` Å above the top layer) on every
    :data:`EXIT_CHECK_STEPS`-th step of their own clock, out of ``contact`` with the slab.
    """
    receding = running & (vz > 0) & (state.steps % EXIT_CHECK_STEPS == 0)
    if not receding.any():  # most steps: nothing to test
        return {}
    crit, cutoff = contact.crit, contact.cutoff
    mol = list(initial.molecule)
    slab = torch.as_tensor(slab_atoms(initial))
    molecule_masses = initial.masses[mol]
    cell = np.asarray(initial.frame.cell, dtype=np.float64)
    receding &= ~contact(state.positions[:, mol], state.positions[:, slab])
    leaving = {}
    for slot in torch.nonzero(receding).flatten().tolist():
        x, v = state.positions[slot, mol].numpy(), state.velocities[slot, mol].numpy()
        rise = float((crit.scatter_height - height[slot]) / vz[slot])  # ASE time to the scatter height
        centre = molecule_masses @ x / molecule_masses.sum()
        travel = float(np.linalg.norm(molecule_masses @ v / molecule_masses.sum())) * rise
        slab_now = state.positions[slot, slab].numpy()
        bond = float(np.linalg.norm(x[1] - x[0]))  # within the turning points: a necessary, cheap test first
        clear = stays_clear(x, v, molecule_masses, (bond, bond), nearby_images(slab_now, centre, cell, cutoff + bond + travel),
                            cutoff, rise)
        if clear:
            limits = initial.bond_range(x, v)
            clear = stays_clear(x, v, molecule_masses, limits,
                                nearby_images(slab_now, centre, cell, cutoff + limits[1] + travel), cutoff, rise)
        if clear:
            leaving[slot] = math.floor(rise / (dt * fs)) + 1
    return leaving
def stays_clear(positions: np.ndarray, velocities: np.ndarray, masses: np.ndarray, bond_range: tuple[float, float],
                obstacles: np.ndarray, cutoff: float, horizon: float) -> bool:
    """Whether neither atom of a free diatomic (positions Å, velocities ASE units, (2, 3); masses (2,) amu) comes
    within ``cutoff`` (Å) of any point of ``obstacles`` (M, 3) Å (fixed; periodic images included) within
    ``horizon`` (ASE time).

    Exact bound on the free motion: the centre of mass c moves uniformly; an atom at share f of the bond sits
    within f·r_outer of c (``bond_range``: the bond's turning points), and its downward offset is at most
    f·r_outer·w(t), w(t) = min(tilt, w(0) + ω t): the bond direction stays in the plane normal to the conserved
    angular momentum, so |u_z| never exceeds the sine of its tilt, and turns at most at ω = |r × ṙ| / r_inner².
    The distance to a point is then at least sqrt(dz² + dh²) with dz = c_z - f r_outer w - z_point and
    dh = |c_xy - xy_point| - f r_outer (each floored at 0). That bound is checked at :data:`EXIT_TIMES` times,
    against the cutoff plus its largest possible fall between them (slope at most |ċ| + f r_outer ω).
    """
    inner, outer = bond_range
    if not math.isfinite(outer):
        return False
    total = masses.sum()
    com, com_v = masses @ positions / total, masses @ velocities / total
    bond = positions[1] - positions[0]
    u_z = bond[2] / np.linalg.norm(bond)
    spin = np.cross(bond, velocities[1] - velocities[0])
    spin_norm = float(np.linalg.norm(spin))
    tilt = math.sqrt(max(0.0, 1.0 - (spin[2] / spin_norm) ** 2)) if spin_norm > 0 else abs(u_z)
    omega = spin_norm / inner**2
    times = np.linspace(0.0, horizon, EXIT_TIMES)
    centre = com + times[:, None] * com_v  # (T, 3)
    horizontal = np.linalg.norm(centre[:, None, :2] - obstacles[None, :, :2], axis=-1)  # (T, M)
    for share, down in ((masses[1] / total, u_z), (masses[0] / total, -u_z)):  # atom 0 sits at c - share r u
        reach = share * outer
        lowest = centre[:, 2] - reach * np.clip(down + omega * times, 0.0, tilt)
        dz = np.maximum(0.0, lowest[:, None] - obstacles[None, :, 2])
        dh = np.maximum(0.0, horizontal - reach)
        margin = (np.linalg.norm(com_v) + reach * omega) * horizon / (EXIT_TIMES - 1) / 2
        if (dz**2 + dh**2 <= (cutoff + margin) ** 2).any():
            return False
    return True


def nearby_images(slab: np.ndarray, centre: np.ndarray, cell: np.ndarray, radius: float) -> np.ndarray:
    """The periodic images (in x, y; cell rows) of slab atoms (M, 3) Å within horizontal distance ``radius`` (Å)
    of ``centre`` and less than ``radius`` below it: every image a molecule there can reach."""
    relative = slab[slab[:, 2] > centre[2] - radius] - centre
    fractional = relative[:, :2] @ np.linalg.inv(cell[:2, :2])
    relative = relative - np.round(fractional) @ cell[:2]
    area = abs(cell[0, 0] * cell[1, 1] - cell[0, 1] * cell[1, 0])
    height = area / max(np.linalg.norm(cell[0, :2]), np.linalg.norm(cell[1, :2]))  # the smaller in-plane cell height
    reach = int(math.ceil(radius / height)) + 1
    shifts = np.array([i * cell[0] + j * cell[1] for i in range(-reach, reach + 1) for j in range(-reach, reach + 1)])
    images = (relative[None] + shifts[:, None]).reshape(-1, 3)
    keep = np.linalg.norm(images[:, :2], axis=-1) < radius
    return images[keep] + centre

