"""Electronic friction (LDFA): the η(r_s) table, the Langevin step against the Ornstein-Uhlenbeck process solved by
hand, the free-atom densities against their electron counts, η = 0 against the adiabatic engine, and the cube density."""

import math

import numpy as np
import pytest
import torch
from ase import units
from ase.io.cube import write_cube

from pyscatter.conditions import Termination
from pyscatter.engine import friction as mdef
from pyscatter.engine import verlet
from pyscatter.engine.runner import run_dynamics
from pyscatter.initial.surface import build_slab
from pyscatter.models.base import Frame, ModelOutput
from pyscatter.models.emt import EMTModel
from pyscatter.models.friction import (
    LDFA,
    CubeDensity,
    DensityError,
    IndependentAtoms,
    ldfa_friction,
)
from test_engine import _Start

GERRITS_2020_HYDROGEN = {1.5: 0.311, 2.5: 0.208, 3.5: 0.127, 5.0: 0.060}
"""Gerrits, Juaristi & Meyer, PRB 102, 155130 (2020): η of H in jellium (atomic units) by r_s (bohr), as published."""
AU_FRICTION = 9.1093837015e-31 / 1.66053906660e-27 / (2.4188843265857e-17 * units.second)
"""m_e / (ħ/E_h) in amu per ASE time unit, from CODATA 2018 values typed here."""


def _density_of(rs: float) -> float:
    return 3.0 / (4.0 * math.pi * rs**3)


def test_eta_interpolation_reproduces_the_published_table_and_vanishes_in_vacuum():
    rho = torch.tensor([_density_of(rs) for rs in GERRITS_2020_HYDROGEN], dtype=torch.float64)
    np.testing.assert_allclose(ldfa_friction(rho).numpy(), list(GERRITS_2020_HYDROGEN.values()), rtol=1e-12)
    between = ldfa_friction(torch.tensor([_density_of(rs) for rs in np.linspace(1.5, 5.0, 50)]))
    assert (between.diff() <= 0).all() and between.min() >= 0.060 and between.max() <= 0.311  # monotone, no overshoot
    assert float(ldfa_friction(torch.tensor([_density_of(1.0)]))) == pytest.approx(0.311)  # held above the densest
    dilute = ldfa_friction(torch.tensor([_density_of(6.0), _density_of(7.0)]))
    assert float(dilute[0] / dilute[1]) == pytest.approx((7 / 6) ** 4, rel=0.02)  # the dilute limit: η ∝ r_s⁻⁴
    assert ldfa_friction(torch.tensor([0.999999e-6, 1e-9, 0.0])).tolist() == [0.0, 0.0, 0.0]  # below RHO_FREE
    assert float(ldfa_friction(torch.tensor([1e-6]))) < 1e-12


def test_free_atom_densities_integrate_to_the_electron_count():
    for metal, z in (("Cu", 29), ("Ni", 28), ("Al", 13)):
        density = IndependentAtoms(np.array([z]), np.diag([30.0, 30.0, 30.0]))
        r = np.geomspace(1e-4, density.cutoff * 0.999999, 20000)
        rho = density.radial(torch.as_tensor(r)[:, None, None]).numpy()[:, 0, 0]  # electrons/bohr³
        electrons = 4 * math.pi * np.trapezoid(r**2 * rho, r) / units.Bohr**3
        assert electrons == pytest.approx(z, abs=0.01), metal


def test_a_metal_without_a_free_atom_density_is_refused_naming_those_that_have_one():
    with pytest.raises(DensityError, match=r"no free-atom density for Ag: .* has Al, Cu, Ni"):
        IndependentAtoms(np.array([47, 47]), np.diag([5.0, 5.0, 20.0]))


class _Uniform:
    """A uniform electron gas of density ``rho`` (electrons/bohr³) everywhere."""

    cutoff, follows_atoms = 0.0, True

    def __init__(self, rho: float):
        self.rho = rho

    def __call__(self, points, slab):
        return torch.full(points.shape[:-1], self.rho, dtype=points.dtype)


class _NoForce:
    name = identity = "free"
    cutoff = 1.0

    def __call__(self, frame, positions, compute_forces=True):
        return ModelOutput(torch.zeros(positions.shape[0], dtype=positions.dtype), torch.zeros_like(positions))

    def select(self, frame, keep):
        pass


def _free_atoms(rs: float, temperature: float, dt_fs: float):
    """Free systems of a far 'slab' atom and two H atoms in a uniform gas of a tabulated r_s (bohr): (dynamics,
    friction, the published η in amu per ASE time unit)."""
    frame = Frame(np.array([29, 1, 1]), np.diag([100.0, 100.0, 100.0]))
    masses = torch.tensor([63.546, 1.008, 1.008], dtype=torch.float64)
    dyn = verlet.Dynamics(frame, masses, torch.tensor([False, True, True]), dt_fs * units.fs)
    friction = mdef.FrictionAtoms(LDFA(_Uniform(_density_of(rs)), temperature), torch.tensor([1, 2]),
                                  torch.tensor([0]), masses[1:], np.random.default_rng)
    return dyn, friction, GERRITS_2020_HYDROGEN[rs] * AU_FRICTION


def _integrate(dyn, friction, velocities, steps, seed=0):
    state = verlet.init(torch.zeros_like(velocities), velocities, dyn)
    eta = torch.zeros(len(velocities), 2, dtype=torch.float64)
    lost = torch.zeros(len(velocities), dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps + 1):  # the first step only computes forces and η
        noise = torch.randn(len(velocities), *mdef.NOISE_SHAPE, generator=generator, dtype=torch.float64)
        state, eta, given = mdef.step(state, eta, _NoForce(), dyn, friction, noise)
        lost += given
    return state, lost


def test_a_free_atom_at_zero_temperature_slows_down_as_exp_minus_eta_t_over_m():
    dyn, friction, eta = _free_atoms(2.5, 0.0, dt_fs=0.5)
    v0 = torch.tensor([[[0.0, 0.0, 0.0], [0.03, -0.02, 0.05], [-0.01, 0.0, 0.02]]], dtype=torch.float64)
    steps = 1000
    state, lost = _integrate(dyn, friction, v0, steps)
    t = steps * dyn.dt
    expected = v0[0, 1:] * math.exp(-eta * t / 1.008)
    assert eta * t / 1.008 > 1.0  # a real decay: more than one e-fold
    # rtol: ASE's CODATA 2014 constants against the 2018 ones above
    np.testing.assert_allclose(state.velocities[0, 1:].numpy(), expected.numpy(), rtol=1e-7)
    kinetic = lambda v: 0.5 * 1.008 * float(v.square().sum())
    assert float(lost[0]) == pytest.approx(kinetic(v0[0, 1:]) - kinetic(expected), rel=1e-7)


def test_free_atoms_reach_the_electronic_temperature():
    temperature, n = 925.0, 2000
    dyn, friction, eta = _free_atoms(2.5, temperature, dt_fs=20.0)  # no force: the O steps are exact at any dt
    steps = int(10 * 1.008 / eta / dyn.dt)  # kinetic energy relaxes as exp(-2 t η/m): e^-20
    state, _ = _integrate(dyn, friction, torch.zeros(n, 3, 3, dtype=torch.float64), steps)
    kinetic_temperature = 1.008 * state.velocities[:, 1:].square().mean() / units.kB  # per degree of freedom: k_B T
    sigma = temperature * math.sqrt(2.0 / (n * 2 * 3))  # chi-squared with 6n degrees of freedom
    assert abs(float(kinetic_temperature) - temperature) < 4 * sigma


class _WithNoise(_Start):
    def noise(self, index):
        return np.random.default_rng(index)


def _results(batch_size, indices, friction):
    """Hand-made H2-on-Cu(111) starts (test_engine's) on EMT, by index."""
    results = []
    run_dynamics(EMTModel(), _WithNoise(), indices, lambda r, c: results.extend(r), batch_size=batch_size, dt=0.1,
                 termination=Termination(max_time=40.0, scatter_height=2.5), friction=friction)
    return {r.index: r for r in results}


@pytest.fixture(scope="module")
def adiabatic():
    return _results(2, range(4), None)


def test_zero_friction_is_the_adiabatic_engine_bitwise(adiabatic):
    assert _results(2, range(4), LDFA(_Uniform(0.0), 925.0)) == adiabatic


def test_independent_atom_friction_does_not_depend_on_batch_size_or_order(adiabatic):
    slab = build_slab("111", 3.6).atoms
    ldfa = LDFA(IndependentAtoms(slab.numbers, slab.cell.array), 925.0)
    one = _results(1, range(4), ldfa)
    assert _results(4, [3, 0, 2, 1], ldfa) == one
    assert all(abs(r.electronic_energy_loss) > 1e-3 for r in one.values() if r.end_time > 2.0)
    # with the energy given to the electrons added back, the energy error is the adiabatic one (these hand-made starts
    # deep in the surface make up to 0.09 eV of Verlet error; the energy lost to the electrons is up to 0.23 eV)
    for index, result in one.items():
        assert result.max_energy_error == pytest.approx(adiabatic[index].max_energy_error, abs=2e-3)


def _write_cube(path, atoms, values) -> None:
    with open(path, "w") as handle:
        write_cube(handle, atoms, values)


def _sampled_density(slab, spacing: float = 0.3, height: float = 16.0):
    """The independent-atom density of ``slab`` sampled on a grid over its cell up to ``height`` Å."""
    cell = slab.cell.array.copy()
    cell[2] = [0.0, 0.0, height]
    shape = [max(4, round(np.linalg.norm(c) / spacing)) for c in cell]
    fractions = np.stack(np.meshgrid(*[np.arange(n) / n for n in shape], indexing="ij"), -1)
    points = torch.as_tensor((fractions @ cell).reshape(-1, 1, 3))
    density = IndependentAtoms(slab.numbers, slab.cell.array)
    atoms = torch.as_tensor(slab.positions)[None]
    values = torch.cat([density(chunk, atoms.expand(len(chunk), -1, -1)) for chunk in points.split(4096)])
    values = values.numpy().reshape(shape)
    framed = slab.copy()
    framed.cell = cell
    return framed, values, density


def test_a_cube_density_interpolates_the_density_it_was_sampled_from(tmp_path):
    slab = build_slab("111", 3.6).atoms
    framed, values, density = _sampled_density(slab)
    _write_cube(tmp_path / "slab.cube", framed, values)
    cube = CubeDensity.load(tmp_path / "slab.cube", slab)
    top = slab.positions[:, 2].max()
    rng = np.random.default_rng(1)
    points = np.c_[rng.random((200, 2)) @ slab.cell.array[:2, :2], top + 1.5 + 2.0 * rng.random(200)]
    points = torch.as_tensor(points[None])
    expected = density(points, torch.as_tensor(slab.positions)[None])
    error = np.abs(cube(points, None).numpy() / expected.numpy() - 1)  # 1.5-3.5 Å above the top layer
    assert np.median(error) < 0.01 and error.max() < 0.05
    assert density.cutoff < cube.cutoff < density.cutoff + 1.0  # the grid point farthest out, plus a grid diagonal


@pytest.mark.parametrize("case, message", [
    ("garbage", "cannot read the density cube"),
    ("negative", "holds a negative density"),
    ("lateral", "does not cover the slab's cell: its lateral cell"),
    ("short", "does not cover the slab's cell: its z range"),
])
def test_a_cube_that_cannot_serve_is_refused_in_one_line(tmp_path, case, message):
    slab = build_slab("111", 3.6).atoms
    framed = slab.copy()
    framed.cell[2] = [0.0, 0.0, 8.0]  # below the top layer (10.4 Å)
    values = np.full((8, 8, 8), 1e-3)
    path = tmp_path / "x.cube"
    if case == "garbage":
        path.write_text("not a cube file\n" * 3)
    else:
        atoms, values = {"negative": (slab, values - 2e-3), "lateral": (build_slab("111", 3.7).atoms, values),
                         "short": (framed, values)}[case]
        _write_cube(path, atoms, values)
    with pytest.raises(DensityError, match=message) as error:
        CubeDensity.load(tmp_path / "x.cube", slab)
    assert "\n" not in str(error.value)


def _stored(directory):
    import sqlite3

    with sqlite3.connect(directory / "results.sqlite") as db:
        return db.execute("SELECT idx, outcome, end_time_fs, energy_drift_eV, v_final, electronic_energy_loss_eV "
                          "FROM trajectories ORDER BY idx").fetchall()


SMALL_LDFA = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--snapshots", "2", "--max-time", "150",
              "--model", "emt", "--lattice-constant", "3.6", "--friction", "ldfa"]


@pytest.mark.slow
def test_a_friction_run_resumes_and_does_not_depend_on_batch_size_or_workers(tmp_path):
    from pyscatter.cli.main import main

    assert main([*SMALL_LDFA, "--trajectories", "6", "--batch-size", "3", "--workers", "1", "--out", str(tmp_path / "a")]) == 0
    assert main([*SMALL_LDFA, "--trajectories", "3", "--batch-size", "1", "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    assert main([*SMALL_LDFA, "--trajectories", "6", "--batch-size", "2", "--workers", "2", "--out", str(tmp_path / "b")]) == 0
    rows = _stored(tmp_path / "a")
    assert rows == _stored(tmp_path / "b") and len(rows) == 6
    assert all(row[5] != 0 for row in rows)  # friction acted on every trajectory


def test_a_run_with_a_cube_density(tmp_path, capsys):
    from pyscatter.cli.main import main

    slab = build_slab("111", 3.6).atoms
    framed, values, _ = _sampled_density(slab, spacing=0.4)
    _write_cube(tmp_path / "slab.cube", framed, values)
    out = tmp_path / "run"
    assert main([*SMALL_LDFA, "--density", str(tmp_path / "slab.cube"), "--trajectories", "2", "--workers", "1",
                 "--out", str(out)]) == 0
    assert "is a frozen slab's: the thermal slab's atoms move" in capsys.readouterr().err
    assert all(row[5] != 0 for row in _stored(out))
