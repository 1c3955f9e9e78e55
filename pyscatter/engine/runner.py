"""Continuous batching: integrate many trajectories, refilling each finished slot at once.

:func:`run_dynamics` pulls trajectory indices from an iterator, draws each one's initial condition from
its own random stream, integrates all slots with one batched force call per step, stops each by the
:mod:`~pyscatter.engine.termination` criteria and hands finished trajectories to a callback. When slots
finish with nothing left to refill them, the batch is compacted (the model's neighbour lists follow
through ``model.select``). A trajectory's result depends only on its index, never on its slot or batch.

**Free flight** (``free_flight=True``). While the molecule is out of the model's range of every slab
atom, slab and molecule do not interact: the energy is E(slab) + E(molecule) and the forces separate.

- *Approach.* The molecule is integrated alone (2-atom calls of the same model, same integrator) until
  one of its atoms comes within the model's ``cutoff`` of an atom (minimum image) of the thermal slab
  snapshot its trajectory drew; it then joins that slab. NVE evolution of a canonical slab stays
  canonical, so the slab at first contact is distributed as the snapshot.
- *Exit.* A receding molecule with no atom within ``cutoff`` of a slab atom, which cannot come back within it
  before its centre of mass reaches the scatter height (:func:`stays_clear`: bond within its turning points,
  bond direction in the plane normal to its conserved angular momentum and turning at a bounded rate, against
  the slab atoms and their periodic images as they stand), is scattered: its final state is that of the free
  molecule, and its end time is when its centre of mass reaches the scatter height at its constant velocity
  (trapped if after ``max_time``).
- The trajectory clock counts the skipped time; ``force_calls`` counts slab+molecule structures only.

A trajectory whose energy, forces or positions become non-finite, or whose total energy strays more than
``termination.max_energy_error`` from its start, ends as FAILED with its reason; the run goes on.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from ase.units import fs

from pyscatter.conditions import Termination
from pyscatter.engine import verlet
from pyscatter.engine.termination import StoppingCriteria, classify, minimum_image
from pyscatter.models.base import ForceModel, Frame
from pyscatter.outcomes import Outcome, TrajectoryResult



class InitialConditions(Protocol):
    """Where trajectories start and how scattered molecules are analysed.

    frame: species and cell of the full system (slab + molecule).  masses: (N,) amu.
    mobile: (N,) bool.  molecule: indices of the two molecular atoms.  top_layer: slab top-layer indices.
    """

    frame: Frame
    masses: np.ndarray
    mobile: np.ndarray
    molecule: tuple[int, int]
    top_layer: np.ndarray

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (N, 3) Å and velocities (N, 3) ASE units of trajectory ``index``."""
        ...

    def final_state(self, positions: np.ndarray, velocities: np.ndarray) -> dict[str, float]:
        """v_final, J_final, translational_energy, internal_energy of a free molecule (2, 3) arrays."""
        ...

    def bond_range(self, positions: np.ndarray, velocities: np.ndarray) -> tuple[float, float]:
        """Shortest and longest bond (Å) a free molecule (2, 3) reaches; (0, inf) if unbound (free flight only)."""
        ...


OnFinished = Callable[[list[TrajectoryResult], int], None]
Observer = Callable[[int, int, np.ndarray, np.ndarray, float, np.ndarray, bool], None]
"""``observer(index, steps, positions, velocities, potential_energy, forces, free)``, called after every step
for every system integrated in it: trajectory index, steps taken, arrays (n, 3) (Å, ASE units, eV/Å) and
energy (eV). ``free`` False: the whole slab+molecule system; True: the free molecule alone during free
flight (n = 2; its energy and forces). A system (re)placed in a batch is reported once with the same
``steps`` before it moves (its first force evaluation), e.g. a molecule joining the slab."""


@dataclass
class _Start:
    """A system ready to be integrated: trajectory index, positions and velocities (N, 3), steps already
    taken, and energy drift / largest energy error (eV) accumulated before."""

    index: int
    positions: np.ndarray
    velocities: np.ndarray
    steps: int = 0
    drift: float = 0.0
    max_error: float = 0.0
    slab: tuple[np.ndarray, np.ndarray] | None = None  # slab positions, velocities awaiting a free molecule
    slab_top: float = math.inf  # height (Å) of that slab's highest atom


class _Batch:
    """Systems of one frame integrated together: the MD state plus per-system bookkeeping (B,)."""

    def __init__(self, model: ForceModel, dyn: verlet.Dynamics, termination: Termination,
                 observer: Observer | None = None, free: bool = False):
        self.model, self.dyn, self.termination = model, dyn, termination
        self.observer, self.free = observer, free
        self.state: verlet.MDState | None = None
        self.starts: list[_Start] = []
        self.reference = torch.zeros(0, dtype=torch.float64)
        self.max_error = torch.zeros(0, dtype=torch.float64)
        self.total = torch.zeros(0, dtype=torch.float64)

    @property
    def size(self) -> int:
        return len(self.starts)

    def place(self, slots: list[int], starts: list[_Start]) -> None:
        """Put ``starts`` into the existing ``slots`` (their lists are rebuilt), or append them if ``slots`` is None."""
        pos = torch.as_tensor(np.stack([s.positions for s in starts]), dtype=torch.float64)
        vel = torch.as_tensor(np.stack([s.velocities for s in starts]), dtype=torch.float64)
        steps = torch.tensor([s.steps for s in starts], dtype=torch.int64)
        errors = torch.tensor([s.max_error for s in starts], dtype=torch.float64)
        if slots is not None:
            index = torch.tensor(slots, dtype=torch.long)
            self.state = verlet.place(self.state, index, pos, vel, self.dyn, steps)
            for slot, start in zip(slots, starts):
                self.starts[slot] = start
            self.max_error[index] = errors
            return
        new = verlet.init(pos, vel, self.dyn, steps)
        self.state = new if self.state is None else verlet.concatenate(self.state, new)
        self.starts += starts
        zeros = torch.zeros(len(starts), dtype=torch.float64)
        self.reference = torch.cat([self.reference, zeros])
        self.max_error = torch.cat([self.max_error, errors])
        self.total = torch.cat([self.total, zeros])

    def keep(self, slots: torch.Tensor) -> None:
        """Compact the batch to ``slots`` (in that order); the model's cached lists follow."""
        self.state = verlet.select(self.state, slots)
        self.starts = [self.starts[i] for i in slots.tolist()]
        self.reference, self.max_error, self.total = self.reference[slots], self.max_error[slots], self.total[slots]
        select = getattr(self.model, "select", None)
        if select is not None:
            select(self.dyn.frame, slots)

    def step(self) -> torch.Tensor:
        """One velocity-Verlet step of every system; returns the mask (B,) of systems that failed in it."""
        fresh = self.state.fresh
        self.state = verlet.step(self.state, self.model, self.dyn)
        s = self.state
        self.total = verlet.kinetic_energy(s.velocities, self.dyn.masses) + s.potential_energy
        if fresh.any():
            drift = torch.tensor([self.starts[i].drift for i in range(self.size)], dtype=torch.float64)
            self.reference = torch.where(fresh, self.total - drift, self.reference)
        self.max_error = torch.maximum(self.max_error, (self.total - self.reference).abs())
        finite = torch.isfinite(self.total + (s.positions + s.forces).sum((1, 2)))  # a non-finite entry spoils the sum
        if self.observer is not None:
            for slot, start in enumerate(self.starts):
                self.observer(start.index, int(s.steps[slot]), s.positions[slot].numpy(), s.velocities[slot].numpy(),
                              float(s.potential_energy[slot]), s.forces[slot].numpy(), self.free)
        return ~finite | ~(self.max_error <= self.termination.max_energy_error)

    def failure(self, slot: int) -> str:
        s = self.state
        if not torch.isfinite(s.positions[slot]).all():
            return "non-finite positions"
        if not torch.isfinite(s.forces[slot]).all():
            return "non-finite forces"
        if not torch.isfinite(self.total[slot]):
            return "non-finite energy"
        return (f"total-energy error {float(self.max_error[slot]):.4g} eV above the bound of "
                f"{self.termination.max_energy_error:g} eV")

    def result(self, slot: int, outcome: Outcome, dt: float, steps: int | None = None, **extra) -> TrajectoryResult:
        steps = int(self.state.steps[slot]) if steps is None else steps
        return TrajectoryResult(
            index=self.starts[slot].index, outcome=outcome, end_time=steps * dt,
            energy_drift=float(self.total[slot] - self.reference[slot]),
            max_energy_error=float(self.max_error[slot]), **extra,
        )


class _Source:
    """Systems ready to join the slab batch: straight from the sampler, or after their free approach."""

    def __init__(self, model: ForceModel, initial: InitialConditions, pending: Iterator[int], batch_size: int,
                 dt: float, termination: Termination, free_flight: bool, observer: Observer | None = None):
        self.initial, self.pending, self.dt, self.termination = initial, pending, dt, termination
        self.free_flight, self.capacity = free_flight, batch_size
        self.ready: deque[_Start] = deque()
        self.finished: list[TrajectoryResult] = []
        self.exhausted = False
        if not free_flight:
            return
        mol = list(initial.molecule)
        frame = Frame(initial.frame.numbers[mol], initial.frame.cell, initial.frame.pbc)
        masses = torch.as_tensor(initial.masses[mol], dtype=torch.float64)
        self.batch = _Batch(model, verlet.Dynamics(frame, masses, torch.ones(2, dtype=torch.bool), dt * fs),
                            termination, observer, free=True)
        self.cutoff = model.cutoff
        self.slab_atoms = _slab_atoms(initial)
        self.crit = StoppingCriteria.of(initial, termination, dt)
        self.max_steps = termination.max_steps(dt)

    def take(self, n: int) -> list[_Start]:
        """Up to ``n`` systems ready to join the slab (fewer only once every index is drawn and finished)."""
        while len(self.ready) < n and not (self.exhausted and (not self.free_flight or self.batch.size == 0)):
            if not self.free_flight:
                self._draw(n - len(self.ready))
            else:
                self._approach()
        return [self.ready.popleft() for _ in range(min(n, len(self.ready)))]

    def _draw(self, n: int) -> list[_Start]:
        starts = []
        for _ in range(n):
            index = next(self.pending, None)
            if index is None:
                self.exhausted = True
                break
            positions, velocities = self.initial.sample(index)
            starts.append(_Start(index, positions, velocities))
        if not self.free_flight:
            self.ready.extend(starts)
        return starts

    def _approach(self) -> None:
        """Refill the free molecules, move those already in range to ``ready``, then step the rest once."""
        mol = list(self.initial.molecule)
        free = self.batch
        newcomers = []
        for start in self._draw(self.capacity - free.size):
            if self.in_contact(start.positions[None, mol], start.positions[None, self.slab_atoms])[0]:
                self.ready.append(start)
            else:
                newcomers.append(_Start(start.index, start.positions[mol], start.velocities[mol],
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
        near = s.positions[:, :, 2].amin(1) - self.cutoff < torch.tensor([start.slab_top for start in free.starts])
        entered = torch.zeros_like(near)
        if near.any():
            near = torch.nonzero(near).flatten()
            slabs = np.stack([free.starts[slot].slab[0][self.slab_atoms] for slot in near.tolist()])
            entered[near] = self.in_contact(s.positions[near], slabs)
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

    def in_contact(self, molecules, slabs) -> torch.Tensor:
        """(B,) whether any atom of molecules (B, 2, 3) is within the cutoff of any atom of slabs (B, M, 3)."""
        molecules, slabs = torch.as_tensor(molecules), torch.as_tensor(slabs)
        d = minimum_image(slabs[:, None] - molecules[:, :, None], self.crit.cell, self.crit.periodic, self.crit.inverse_cell)
        return (d.norm(dim=-1) < self.cutoff).flatten(1).any(1)

    def _join(self, slot: int) -> _Start:
        """The free molecule of ``slot`` above the slab snapshot its trajectory drew."""
        free, mol = self.batch, list(self.initial.molecule)
        start = free.starts[slot]
        positions, velocities = (x.copy() for x in start.slab)
        positions[mol] = free.state.positions[slot].numpy()
        velocities[mol] = free.state.velocities[slot].numpy()
        return _Start(start.index, positions, velocities, int(free.state.steps[slot]),
                      float(free.total[slot] - free.reference[slot]), float(free.max_error[slot]))


def _slab_atoms(initial: InitialConditions) -> np.ndarray:
    return np.array([i for i in range(initial.frame.n_atoms) if i not in initial.molecule])


def run_dynamics(
    model: ForceModel,
    initial: InitialConditions,
    indices: Iterable[int],
    on_finished: OnFinished,
    batch_size: int,
    dt: float = 0.1,
    termination: Termination = Termination(),
    free_flight: bool = False,
    observer: Observer | None = None,
) -> None:
    """Integrate every trajectory in ``indices`` (time step ``dt`` in fs) to its outcome.

    ``on_finished(results, force_calls)`` is called after each step in which trajectories finished, with
    the slab+molecule structures evaluated since its previous call. ``observer`` (:data:`Observer`) sees
    every step of every trajectory, e.g. to record one (run it alone: results do not depend on the batch).
    """
    crit = StoppingCriteria.of(initial, termination, dt)
    masses = torch.as_tensor(initial.masses, dtype=torch.float64)
    dyn = verlet.Dynamics(initial.frame, masses, torch.as_tensor(initial.mobile, dtype=torch.bool), dt * fs)
    source = _Source(model, initial, iter(indices), batch_size, dt, termination, free_flight, observer)
    batch = _Batch(model, dyn, termination, observer)
    first = source.take(batch_size)
    if source.finished:
        on_finished(source.finished, 0)
        source.finished = []
    if not first:
        return
    batch.place(None, first)
    mol = list(initial.molecule)
    slab_atoms = torch.as_tensor(_slab_atoms(initial))
    molecule_masses = initial.masses[mol]
    cell = np.asarray(initial.frame.cell, dtype=np.float64)
    force_calls = 0
    while batch.size:
        force_calls += batch.size
        failed = batch.step()
        s = batch.state
        outcome, height, vz = classify(s.positions, s.velocities, s.steps, crit)
        outcome = torch.where(failed, int(Outcome.FAILED), outcome)
        exits = {}
        if free_flight:
            receding = (outcome == int(Outcome.RUNNING)) & (vz > 0) & (s.steps % EXIT_CHECK_STEPS == 0)
            if receding.any():
                receding &= ~source.in_contact(s.positions[:, mol], s.positions[:, slab_atoms])
            for slot in torch.nonzero(receding).flatten().tolist():
                x, v = s.positions[slot, mol].numpy(), s.velocities[slot, mol].numpy()
                rise = float((crit.scatter_height - height[slot]) / vz[slot])  # ASE time to the scatter height
                centre = molecule_masses @ x / molecule_masses.sum()
                travel = float(np.linalg.norm(molecule_masses @ v / molecule_masses.sum())) * rise
                slab_now = s.positions[slot, slab_atoms].numpy()

                def clear(limits: tuple[float, float]) -> bool:
                    obstacles = nearby_images(slab_now, centre, cell, model.cutoff + limits[1] + travel)
                    return stays_clear(x, v, molecule_masses, limits, obstacles, model.cutoff, rise)

                bond = float(np.linalg.norm(x[1] - x[0]))  # within the turning points: a necessary, cheap test first
                if clear((bond, bond)) and clear(initial.bond_range(x, v)):
                    exits[slot] = math.floor(rise / (dt * fs)) + 1
        done = (outcome != int(Outcome.RUNNING)).clone()
        for slot in exits:
            done[slot] = True
        if not done.any():
            continue
        results = source.finished
        source.finished = []
        for slot in torch.nonzero(done).flatten().tolist():
            code = Outcome(int(outcome[slot]))
            if code is Outcome.FAILED:
                results.append(batch.result(slot, code, dt, failure=batch.failure(slot)))
            elif slot in exits:
                end = int(s.steps[slot]) + max(exits[slot], 1)
                if end > crit.max_steps:
                    results.append(batch.result(slot, Outcome.TRAPPED, dt, steps=crit.max_steps))
                else:
                    final = initial.final_state(s.positions[slot, mol].numpy(), s.velocities[slot, mol].numpy())
                    results.append(batch.result(slot, Outcome.SCATTERED, dt, steps=end, **final))
            elif code is Outcome.SCATTERED:
                final = initial.final_state(s.positions[slot, mol].numpy(), s.velocities[slot, mol].numpy())
                results.append(batch.result(slot, code, dt, **final))
            else:
                results.append(batch.result(slot, code, dt))
        finished = torch.nonzero(done).flatten().tolist()
        refills = source.take(len(finished))
        results += source.finished
        source.finished = []
        if refills:
            batch.place(finished[:len(refills)], refills)
        on_finished(results, force_calls)
        force_calls = 0
        if len(refills) < len(finished):
            keep = torch.tensor(sorted(set(range(batch.size)) - set(finished[len(refills):])), dtype=torch.long)
            batch.keep(keep)


EXIT_CHECK_STEPS = 10
"""A receding molecule's exit (:func:`stays_clear`) is tested on every this-many-th step of its trajectory
(a trajectory's own clock, so results do not depend on the batch): the test costs far more than a step's
bookkeeping, and a later release costs at most this many structure calls."""
EXIT_TIMES = 64
"""Times at which :func:`stays_clear` evaluates its bound over the horizon (a Lipschitz margin covers between)."""


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
