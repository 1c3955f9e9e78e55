"""Langevin thermalisation of the bare slab: temperature, fixed atoms, determinism, caching."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT

from pyscatter.initial.surface import build_slab
from pyscatter.initial.thermal import (
    ThermalSnapshots,
    decorrelation_time,
    kinetic_temperature,
    load_or_thermalise,
    thermalise,
    velocity_autocorrelation,
)
from pyscatter.models.base import ASECalculatorModel
from pyscatter.models.emt import EMTModel

T = 925.0
A_925K = 3.6452  # EMT a(0 K) x Cu's a(925 K)/a(0 K)


def emt_model():
    """pyscatter's batched EMT (exact against ASE's, tests/test_emt.py), the model thermalise runs with."""
    return EMTModel()


@pytest.fixture(scope="module")
def model():
    return emt_model()


@pytest.fixture(scope="module")
def slab():
    return build_slab("111", A_925K)


def check_temperature(snapshots: ThermalSnapshots, slab, n_chains: int) -> None:
    """Mean kinetic temperature of the mobile atoms within 2 standard errors of T.

    Per snapshot, 2 E_kin/k_B of the 3 N_mobile mobile degrees of freedom is T times a
    chi-square variable, so T_kin has standard deviation T sqrt(2 / (3 N_mobile)); snapshots
    of different chains are independent and those of one chain are spaced by more than the
    decorrelation time, so the standard error of the mean over S snapshots is that over
    sqrt(S). The independence is checked: the empirical standard error from the spread of
    the per-chain means (independent by construction) must agree, and consecutive snapshots
    of a chain must be uncorrelated.
    """
    mobile = ~slab.fixed
    t_kin = kinetic_temperature(snapshots.velocities, slab.atoms.get_masses(), mobile)
    n = len(t_kin)
    standard_error = T * np.sqrt(2.0 / (3 * mobile.sum())) / np.sqrt(n)
    assert abs(t_kin.mean() - T) < 2 * standard_error, (t_kin.mean(), standard_error)

    per_chain = t_kin.reshape(-1, n_chains)  # (rounds, chains): snapshot k is chain k % C
    chain_means = per_chain.mean(axis=0)
    empirical_error = chain_means.std(ddof=1) / np.sqrt(n_chains)
    assert 0.5 < empirical_error / standard_error < 1.6, (empirical_error, standard_error)

    deviations = per_chain - T
    lag1 = np.sum(deviations[1:] * deviations[:-1]) / np.sum(deviations**2)
    assert abs(lag1) < 3.0 / np.sqrt(deviations[1:].size), lag1


def test_kinetic_temperature_and_fixed_atoms(model, slab):
    chains, rounds = 16, 8
    snapshots = thermalise(model, slab, T, chains * rounds, seed=11, n_chains=chains)
    assert snapshots.positions.shape == snapshots.velocities.shape == (chains * rounds, len(slab.atoms), 3)
    check_temperature(snapshots, slab, chains)

    fixed = slab.fixed
    assert np.all(snapshots.velocities[:, fixed] == 0.0)
    assert np.all(snapshots.positions[:, fixed] == slab.atoms.positions[fixed])
    mobile_displacement = snapshots.positions[:, ~fixed] - slab.atoms.positions[~fixed]
    assert 0.05 < np.sqrt(np.mean(mobile_displacement**2)) < 0.5  # Å: thermal vibration, no melting


def test_deterministic_for_a_seed(model, slab):
    run = lambda seed: thermalise(model, slab, T, 6, seed, n_chains=3, equilibration_fs=20.0, spacing_fs=10.0)
    first, again, other = run(5), run(5), run(6)
    assert np.array_equal(first.positions, again.positions)
    assert np.array_equal(first.velocities, again.velocities)
    assert not np.array_equal(first.velocities, other.velocities)


def test_progress_reports_every_step(model, slab):
    calls = []
    thermalise(model, slab, T, 2, 0, lambda done, total: calls.append((done, total)), equilibration_fs=10.0)
    assert calls == [(k, 5) for k in range(1, 6)]


def test_cache_is_reused_only_for_the_same_setup(model, slab, tmp_path):
    path = tmp_path / "thermal.npz"
    kwargs = {"equilibration_fs": 10.0, "spacing_fs": 4.0, "n_chains": 2}
    made = load_or_thermalise(path, model, slab, T, 4, 1, **kwargs)
    loaded = ThermalSnapshots.load(path)
    assert np.array_equal(loaded.positions, made.positions)
    assert (loaded.temperature, loaded.surface, loaded.lattice_constant, loaded.model_identity, loaded.seed) == (
        T, "111", slab.lattice_constant, model.identity, 1,
    )
    assert loaded.matches(model, slab, T, 4, 1)

    stamp = path.stat().st_mtime_ns
    assert np.array_equal(load_or_thermalise(path, model, slab, T, 4, 1, **kwargs).velocities, made.velocities)
    assert path.stat().st_mtime_ns == stamp

    other_model = ASECalculatorModel(EMT(), species=frozenset({1, 29}), cutoff=6.0)
    assert other_model.identity != model.identity
    assert not loaded.matches(other_model, slab, T, 4, 1)
    assert not loaded.matches(model, slab, 300.0, 4, 1)
    assert not loaded.matches(model, build_slab("111", A_925K + 0.01), T, 4, 1)
    assert not loaded.matches(model, build_slab("100", A_925K), T, 4, 1)
    assert not loaded.matches(model, slab, T, 4, 2)
    assert not loaded.matches(model, slab, T, 5, 1)

    remade = load_or_thermalise(path, model, slab, 600.0, 4, 1, **kwargs)
    assert remade.temperature == 600.0
    assert ThermalSnapshots.load(path).temperature == 600.0

    path.write_bytes(b"not an npz")
    with pytest.raises(ValueError):
        ThermalSnapshots.load(path)
    assert load_or_thermalise(path, model, slab, T, 4, 1, **kwargs).temperature == T


def test_rejects_bad_arguments(model, slab):
    with pytest.raises(ValueError):
        thermalise(model, slab, 0.0, 4, 0)
    with pytest.raises(ValueError):
        thermalise(model, slab, T, 0, 0)


@pytest.mark.slow
def test_temperature_long_statistics(model, slab):
    chains, rounds = 16, 48
    snapshots = thermalise(model, slab, T, chains * rounds, seed=2024, n_chains=chains)
    check_temperature(snapshots, slab, chains)


def test_snapshot_spacing_exceeds_decorrelation_time(model, slab):
    """The check behind "thermal snapshots are independent", in the default run (~1 CPU-minute): 16 chains,
    3 ps after 0.5 ps of equilibration. The velocity autocorrelation has decayed (< 0.05) well before half the
    snapshot spacing, and the kinetic-temperature autocorrelation is at the noise level (measured 0.074 at
    most; 0.03 in 4 ps runs) at every lag from half the spacing to twice the spacing (two snapshots of one chain)."""
    from pyscatter.initial.thermal import SNAPSHOT_SPACING_FS

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: torch's own threads only contend on the 2-core CI machine
    try:
        times, vacf, kacf = velocity_autocorrelation(model, slab, T, seed=1, n_chains=16, duration_fs=3000.0,
                                                     equilibration_fs=500.0)
    finally:
        torch.set_num_threads(threads)
    tau_velocity = decorrelation_time(times, vacf)
    print(f"velocity decorrelation time at {T} K: {tau_velocity} fs")
    assert tau_velocity < SNAPSHOT_SPACING_FS / 2
    lags = (times >= SNAPSHOT_SPACING_FS / 2) & (times <= 2 * SNAPSHOT_SPACING_FS)
    assert times.max() >= 2 * SNAPSHOT_SPACING_FS
    assert np.all(np.abs(kacf[lags]) < 0.1)


def test_truncated_cache_is_remade(model, slab, tmp_path):
    path = tmp_path / "thermal.npz"
    kwargs = {"equilibration_fs": 4.0, "n_chains": 2}
    made = load_or_thermalise(path, model, slab, T, 2, 1, **kwargs)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError):
        ThermalSnapshots.load(path)
    assert np.array_equal(load_or_thermalise(path, model, slab, T, 2, 1, **kwargs).positions, made.positions)
    assert not (tmp_path / "thermal.npz.partial").exists()
