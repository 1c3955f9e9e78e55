"""Thermal slab snapshots: batched Langevin MD of the bare slab at temperature T.

C independent chains run as one batch of the force model with the BAOAB splitting of Langevin
dynamics (Leimkuhler & Matthews 2013) in float64; the fixed atoms keep zero velocity and never
move. After equilibration each chain is sampled every ``spacing_fs``.

Spacing: measured with ``velocity_autocorrelation`` on Cu(111) with EMT, friction 0.01/fs,
16 chains x 4 ps. The velocity autocorrelation of the mobile atoms oscillates with the phonon
periods (first zero at ~45 fs); its magnitude stays below 0.05 after 144 fs at 925 K and after
300 fs at 300 K (``decorrelation_time``). The autocorrelation of the slab's kinetic
temperature drops below 0.05 after ~160 fs (925 K) and ~220 fs (300 K) and is at the noise
level (±0.03) beyond. ``SNAPSHOT_SPACING_FS`` = 500 fs exceeds these by a factor 1.7-3.5;
at 925 K, snapshots of a chain 400 fs apart had a kinetic-temperature correlation of 0.002
(1024 snapshots). With at most ``MAX_CHAINS`` snapshots, each comes from its own chain.

Time step: without friction at 925 K, dt = 2 fs keeps the total energy of the slab within
3 meV over 500 fs (kinetic energy 4.3 eV), without drift, the error scaling as dt².

Units: positions Å, velocities ASE units (Å per ASE time unit, ½ m v² in eV), time fs.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ase import units

from pyscatter.initial.surface import Slab
from pyscatter.models.base import ForceModel, Frame

TIMESTEP_FS = 2.0
FRICTION_PER_FS = 0.01
EQUILIBRATION_FS = 1000.0
SNAPSHOT_SPACING_FS = 500.0
MAX_CHAINS = 64

Progress = Callable[[int, int], None]
"""Called as ``progress(steps_done, steps_total)``."""


@dataclass
class ThermalSnapshots:
    """Thermalised slab configurations.

    positions: (S, N, 3) Å (not wrapped into the cell). velocities: (S, N, 3) ASE units.
    temperature: K. surface: facet. lattice_constant: Å. model_identity: the model's
    ``identity``. seed: of the Langevin noise and initial velocities. protocol: how they were
    made (provenance only).  metal: of the slab (files written before metals existed: Cu).
    """

    positions: np.ndarray
    velocities: np.ndarray
    temperature: float
    surface: str
    lattice_constant: float
    model_identity: str
    seed: int
    protocol: str = ""
    metal: str = "Cu"

    def save(self, path: str | Path) -> None:
        """Write to ``path`` (npz), atomically."""
        partial = Path(f"{path}.partial")
        with open(partial, "wb") as f:
            np.savez(
                f,
                positions=self.positions,
                velocities=self.velocities,
                temperature=self.temperature,
                surface=self.surface,
                lattice_constant=self.lattice_constant,
                model_identity=self.model_identity,
                seed=self.seed,
                protocol=self.protocol,
                metal=self.metal,
            )
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path) -> ThermalSnapshots:
        """Read a file written by :meth:`save`; ValueError if it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                snapshots = cls(
                    positions=data["positions"],
                    velocities=data["velocities"],
                    temperature=float(data["temperature"]),
                    surface=str(data["surface"]),
                    lattice_constant=float(data["lattice_constant"]),
                    model_identity=str(data["model_identity"]),
                    seed=int(data["seed"]),
                    protocol=str(data["protocol"]),
                    metal=str(data["metal"]) if "metal" in data else "Cu",
                )
        except (KeyError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} is not a thermal snapshot file: {err}") from err
        p, v = snapshots.positions, snapshots.velocities
        if p.ndim != 3 or p.shape[2] != 3 or p.shape != v.shape:
            raise ValueError(f"{path}: inconsistent snapshot shapes {p.shape}, {v.shape}")
        return snapshots

    def matches(self, model: ForceModel, slab: Slab, temperature: float, n_snapshots: int, seed: int) -> bool:
        """Whether these snapshots are what :func:`thermalise` would make for these arguments."""
        return (
            self.model_identity == model.identity
            and self.surface == slab.surface
            and self.metal == slab.metal
            and math.isclose(self.lattice_constant, slab.lattice_constant, rel_tol=0.0, abs_tol=1e-9)
            and math.isclose(self.temperature, temperature, rel_tol=1e-12)
            and self.seed == seed
            and self.positions.shape == (n_snapshots, len(slab.atoms), 3)
        )


class _LangevinSlab:
    """C copies of a slab under BAOAB Langevin dynamics at temperature T with fixed atoms."""

    def __init__(
        self,
        model: ForceModel,
        slab: Slab,
        temperature: float,
        n_chains: int,
        seed: int,
        timestep_fs: float,
        friction_per_fs: float,
    ):
        device = torch.device(getattr(model, "device", "cpu"))
        atoms = slab.atoms
        self.model = model
        self.frame = Frame.from_atoms(atoms)
        self.generator = torch.Generator().manual_seed(seed)
        self.device = device
        masses = torch.tensor(atoms.get_masses(), dtype=torch.float64, device=device)[:, None]
        self.mobile = torch.tensor(~slab.fixed, device=device)[:, None].to(torch.float64)
        self.inv_mass = self.mobile / masses
        self.dt = timestep_fs * units.fs
        self.c1 = math.exp(-friction_per_fs * timestep_fs)
        self.thermal_speed = torch.sqrt(units.kB * temperature / masses) * self.mobile
        self.x = torch.tensor(atoms.positions, dtype=torch.float64, device=device).repeat(n_chains, 1, 1)
        self.v = self.thermal_speed * self._gaussian()
        self.f = self._forces()

    def _gaussian(self) -> torch.Tensor:
        noise = torch.randn(self.x.shape, generator=self.generator, dtype=torch.float64)
        return noise.to(self.device)

    def _forces(self) -> torch.Tensor:
        return self.model(self.frame, self.x).forces * self.mobile

    def step(self) -> None:
        half = 0.5 * self.dt
        self.v += half * self.f * self.inv_mass
        self.x += half * self.v
        self.v = self.c1 * self.v + math.sqrt(1.0 - self.c1**2) * self.thermal_speed * self._gaussian()
        self.x += half * self.v
        self.f = self._forces()
        self.v += half * self.f * self.inv_mass


def thermalise(
    model: ForceModel,
    slab: Slab,
    temperature: float,
    n_snapshots: int,
    seed: int,
    progress: Progress | None = None,
    *,
    n_chains: int | None = None,
    timestep_fs: float = TIMESTEP_FS,
    friction_per_fs: float = FRICTION_PER_FS,
    equilibration_fs: float = EQUILIBRATION_FS,
    spacing_fs: float = SNAPSHOT_SPACING_FS,
) -> ThermalSnapshots:
    """``n_snapshots`` configurations of ``slab`` in equilibrium at ``temperature`` (K) under ``model``.

    ``n_chains`` independent chains (default min(n_snapshots, 64)) start from the ideal slab
    with Maxwell-Boltzmann velocities, equilibrate for ``equilibration_fs`` and are then
    sampled every ``spacing_fs``; snapshot k is chain k % C after k // C spacings. Deterministic
    for a given ``seed`` (noise drawn on the CPU). ``progress``: a callable
    ``(steps_done, steps_total)``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 K, got {temperature}")
    if n_snapshots < 1:
        raise ValueError(f"n_snapshots must be >= 1, got {n_snapshots}")
    chains = min(n_snapshots, MAX_CHAINS) if n_chains is None else n_chains
    rounds = -(-n_snapshots // chains)
    equilibration_steps = max(1, round(equilibration_fs / timestep_fs))
    spacing_steps = max(1, round(spacing_fs / timestep_fs))
    total = equilibration_steps + (rounds - 1) * spacing_steps

    md = _LangevinSlab(model, slab, temperature, chains, seed, timestep_fs, friction_per_fs)
    positions, velocities = [], []
    for step in range(1, total + 1):
        md.step()
        if step >= equilibration_steps and (step - equilibration_steps) % spacing_steps == 0:
            positions.append(md.x.cpu().numpy().copy())
            velocities.append(md.v.cpu().numpy().copy())
        if progress is not None:
            progress(step, total)

    protocol = (
        f"BAOAB Langevin, dt={timestep_fs} fs, friction={friction_per_fs}/fs, {chains} chains, "
        f"equilibration {equilibration_steps * timestep_fs} fs, spacing {spacing_steps * timestep_fs} fs"
    )
    return ThermalSnapshots(
        np.concatenate(positions)[:n_snapshots],
        np.concatenate(velocities)[:n_snapshots],
        float(temperature),
        slab.surface,
        slab.lattice_constant,
        model.identity,
        int(seed),
        protocol,
        slab.metal,
    )


def cached_snapshots(path: str | Path) -> ThermalSnapshots | None:
    """The snapshots saved at ``path``; None if there is no file or it is not a snapshot file."""
    try:
        return ThermalSnapshots.load(path) if Path(path).exists() else None
    except ValueError:
        return None


def load_or_thermalise(path: str | Path, model: ForceModel, slab: Slab, temperature: float, n_snapshots: int, seed: int,
                       progress: Progress | None = None, **langevin) -> ThermalSnapshots:
    """The snapshots cached at ``path`` if they match the arguments, else :func:`thermalise` and save them there."""
    cached = cached_snapshots(path)
    if cached is not None and cached.matches(model, slab, temperature, n_snapshots, seed):
        return cached
    snapshots = thermalise(model, slab, temperature, n_snapshots, seed, progress, **langevin)
    snapshots.save(path)
    return snapshots


def kinetic_temperature(velocities: np.ndarray, masses: np.ndarray, mobile: np.ndarray) -> np.ndarray:
    """Kinetic temperature (K) of the ``mobile`` atoms: 2 E_kin / (3 N_mobile k_B); velocities (..., N, 3)."""
    v = velocities[..., mobile, :]
    kinetic = 0.5 * np.einsum("i,...ij,...ij->...", masses[mobile], v, v)
    return 2.0 * kinetic / (3 * int(mobile.sum()) * units.kB)


def velocity_autocorrelation(
    model: ForceModel,
    slab: Slab,
    temperature: float,
    seed: int,
    n_chains: int = 8,
    duration_fs: float = 1000.0,
    *,
    timestep_fs: float = TIMESTEP_FS,
    friction_per_fs: float = FRICTION_PER_FS,
    equilibration_fs: float = EQUILIBRATION_FS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised autocorrelations in equilibrium: times (fs), of the mobile atoms' velocities, and of the kinetic temperature.

    Averages over chains and all time origins of a ``duration_fs`` run after equilibration;
    lags go up to half the run.
    """
    md = _LangevinSlab(model, slab, temperature, n_chains, seed, timestep_fs, friction_per_fs)
    for _ in range(round(equilibration_fs / timestep_fs)):
        md.step()
    n_steps = round(duration_fs / timestep_fs)
    mobile = ~slab.fixed
    trajectory = np.empty((n_steps, n_chains, int(mobile.sum()), 3))
    for i in range(n_steps):
        md.step()
        trajectory[i] = md.v.cpu().numpy()[:, mobile]
    t_kin = kinetic_temperature(trajectory, slab.atoms.get_masses()[mobile], np.ones(mobile.sum(), bool))
    vacf = _autocorrelation(trajectory.reshape(n_steps, -1))
    kacf = _autocorrelation(t_kin - t_kin.mean(axis=0))
    return np.arange(len(vacf)) * timestep_fs, vacf, kacf


def _autocorrelation(series: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation of ``series`` (time, components), summed over components, lags < half the length."""
    n = len(series)
    spectrum = np.fft.rfft(series, n=2 * n, axis=0)
    correlation = np.fft.irfft(spectrum * spectrum.conj(), axis=0)[: n // 2].sum(axis=1)
    correlation /= n - np.arange(n // 2)
    return correlation / correlation[0]


def decorrelation_time(times: np.ndarray, autocorrelation: np.ndarray, threshold: float = 0.05) -> float:
    """First time (fs) after which |autocorrelation| stays below ``threshold``."""
    above = np.flatnonzero(np.abs(autocorrelation) >= threshold)
    if len(above) == 0:
        return float(times[0])
    if above[-1] == len(times) - 1:
        raise ValueError("autocorrelation does not decay below the threshold within the measured window")
    return float(times[above[-1] + 1])
