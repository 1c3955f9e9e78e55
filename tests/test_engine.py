"""The batched engine against ASE's VelocityVerlet, and continuous batching's independence of slots."""

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.md.verlet import VelocityVerlet

from pyscatter.conditions import Termination
from pyscatter.engine import verlet
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.surface import build_slab
from pyscatter.models.base import Frame
from pyscatter.models.emt import EMTModel
from pyscatter.outcomes import Outcome


def _slab_with_h2(seed: int, height: float = 1.8) -> Atoms:
    """A rattled, hot Cu(111) slab with an H2 molecule ``height`` Å above it, heading down."""
    slab = build_slab("111", 3.6)
    atoms = slab.atoms.copy()
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape) * ~slab.fixed[:, None]
    top = atoms.positions[slab.top_layer].mean(0)
    h2 = Atoms("H2", positions=[top + [-0.37, 0.1, height], top + [0.37, -0.1, height]])
    atoms += h2
    atoms.set_constraint(FixAtoms(mask=np.r_[slab.fixed, False, False]))
    v = rng.normal(size=(len(atoms), 3)) * np.sqrt(units.kB * 600 / atoms.get_masses())[:, None]
    v[-2:] = [[0.0, 0.01, -0.06], [0.01, 0.0, -0.06]]
    v[np.r_[slab.fixed, False, False]] = 0.0
    atoms.set_velocities(v)
    return atoms


def test_verlet_matches_ase_velocity_verlet_after_2000_steps():
    starts = [_slab_with_h2(1)]
    reference = []
    for atoms in starts:
        atoms = atoms.copy()
        atoms.calc = EMT()
        VelocityVerlet(atoms, timestep=0.1 * units.fs).run(2000)
        reference.append(atoms.positions)

    frame = Frame.from_atoms(starts[0])
    masses = torch.as_tensor(starts[0].get_masses())
    mobile = torch.as_tensor(np.array([i not in starts[0].constraints[0].index for i in range(len(starts[0]))]))
    dyn = verlet.Dynamics(frame, masses, mobile, 0.1 * units.fs)
    state = verlet.init(
        torch.as_tensor(np.stack([a.positions for a in starts])),
        torch.as_tensor(np.stack([a.get_velocities() for a in starts])),
        dyn,
    )
    model = EMTModel()
    for _ in range(2001):  # the first step only computes the initial forces
        state = verlet.step(state, model, dyn)
    assert state.steps.tolist() == [2000]
    np.testing.assert_allclose(state.positions.numpy(), np.stack(reference), rtol=0, atol=1e-6)
    # the molecule really interacted with the surface in that time
    assert np.linalg.norm(reference[0][-1] - starts[0].positions[-1]) > 0.5


class _Start:
    """Initial conditions for the runner: hand-made slabs with H2 at different heights."""

    def __init__(self):
        atoms = _slab_with_h2(0)
        self.frame = Frame.from_atoms(atoms)
        self.masses = atoms.get_masses()
        self.mobile = np.array([i not in atoms.constraints[0].index for i in range(len(atoms))])
        self.molecule = (len(atoms) - 2, len(atoms) - 1)
        self.top_layer = build_slab("111", 3.6).top_layer

    def sample(self, index):
        atoms = _slab_with_h2(100 + index, height=1.2 + 0.4 * (index % 4))
        velocities = atoms.get_velocities()
        if index % 3 == 0:  # some fly away from the surface
            velocities[-2:, 2] = 1.0
        return atoms.positions, velocities

    def final_state(self, positions, velocities):
        return {"translational_energy": 0.0}


def _run(batch_size, indices, max_time=60.0):
    results = []
    calls = []
    run_dynamics(
        EMTModel(), _Start(), indices, lambda r, c: (results.extend(r), calls.append(c)),
        batch_size=batch_size, dt=0.1, termination=Termination(max_time=max_time, scatter_height=2.5),
    )
    return {r.index: r for r in results}, sum(calls)


def test_results_do_not_depend_on_batch_size_or_order():
    one, calls_one = _run(1, range(7))
    four, calls_four = _run(4, [3, 0, 6, 1, 5, 2, 4])
    assert one == four  # bitwise: every field of every trajectory
    assert calls_one == calls_four == sum(round(r.end_time / 0.1) + 1 for r in one.values())
    outcomes = {r.outcome for r in one.values()}
    assert Outcome.SCATTERED in outcomes and len(outcomes) >= 2


def test_energy_error_is_small_and_second_order_in_dt():
    """Real initial conditions (thermal slab, EBK H2(1,1), 0.5 eV): |E(t) - E(0)| < 10 meV and ∝ dt²."""
    from pyscatter.conditions import RunSpec
    from pyscatter.initial.sampler import build_initial_conditions, quantised_molecule
    from pyscatter.initial.thermal import thermalise

    spec = RunSpec(surface="111", temperature=925.0, v=1, J=1, model="emt")
    model = EMTModel()
    slab = build_slab("111", 3.64)
    initial = build_initial_conditions(spec, 0.5, slab, thermalise(model, slab, 925.0, 2, seed=0),
                                       quantised_molecule(spec, model))
    errors = {}
    for dt in (0.1, 0.05):
        results = []
        run_dynamics(model, initial, range(4), lambda r, c: results.extend(r), batch_size=4, dt=dt, termination=Termination(max_time=60.0))
        errors[dt] = np.array([r.max_energy_error for r in sorted(results, key=lambda r: r.index)])
        assert all(abs(r.energy_drift) <= r.max_energy_error for r in results)
    assert errors[0.1].max() < 10e-3
    np.testing.assert_allclose(errors[0.1] / errors[0.05], 4.0, rtol=0.25)
