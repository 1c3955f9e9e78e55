"""The posterior of a linear ACE fit: its normal equations and a sample of its design rows, kept beside the model.

:func:`pyscatter.surrogate.fit.fit_ace` writes it (``model.posterior.npz``: :func:`posterior_path`); a new prior
strength solves it again (:func:`pyscatter.surrogate.fit.refit_ace`) and :mod:`pyscatter.surrogate.committee` draws
committees from it. Rows are weighted design rows (energies eV, forces eV/Å, times their weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyscatter.surrogate.frames import save_npz

ROW_SAMPLE = 4096
"""Rows of the design kept (uniformly at random) for POPS corrections."""


@dataclass
class Posterior:
    """A linear fit in the weighted row space of :func:`~pyscatter.surrogate.fit.design_rows`.

    normal (P, P) = A^T A and rhs (P,) = A^T y of all rows; lam and prior (P,): the ridge term lam diag(prior)
    (prior = Gamma^2); residual: mean squared weighted residual of the rows; n_rows; coefficients (P,): the fit c;
    rows (M, P) and errors (M,) = y - rows @ c: a uniform sample of the rows (POPS corrections).
    """

    normal: np.ndarray
    rhs: np.ndarray
    lam: float
    prior: np.ndarray
    residual: float
    n_rows: int
    coefficients: np.ndarray
    rows: np.ndarray
    errors: np.ndarray

    def hessian(self) -> np.ndarray:
        return self.normal + self.lam * np.diag(self.prior)


class RowSample:
    """A uniform random sample of at most ``size`` rows of a design streamed in batches (smallest random keys kept)."""

    def __init__(self, seed: int, size: int = ROW_SAMPLE):
        self.rng, self.size = np.random.default_rng(seed), size
        self.keys, self.a, self.y = np.empty(0), None, np.empty(0)

    def add(self, a: np.ndarray, y: np.ndarray) -> None:
        keys = np.concatenate([self.keys, self.rng.random(len(y))])
        a = a if self.a is None else np.concatenate([self.a, a])
        y = np.concatenate([self.y, y])
        keep = np.argsort(keys)[: self.size]
        self.keys, self.a, self.y = keys[keep], a[keep], y[keep]

    def rows(self, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The kept rows and their errors y - a @ coefficients."""
        return self.a, self.y - self.a @ coefficients


def save_posterior(path: Path, post: Posterior) -> None:
    """npz: the normal matrix as its float64 upper triangle (8 MB at 1408 functions, 33 MB at 2892), the sampled rows in float32 (23 MB at 1408, 47 MB at 2892)."""
    upper = np.triu_indices(len(post.rhs))
    save_npz(path, normal_upper=post.normal[upper], rhs=post.rhs, lam=post.lam, prior=post.prior, residual=post.residual,
             n_rows=post.n_rows, coefficients=post.coefficients, rows=post.rows.astype(np.float32), errors=post.errors)


def load_posterior(path: Path) -> Posterior:
    with np.load(path) as z:
        n = len(z["rhs"])
        normal = np.zeros((n, n))
        normal[np.triu_indices(n)] = z["normal_upper"]
        normal = normal + np.triu(normal, 1).T
        return Posterior(normal, z["rhs"], float(z["lam"]), z["prior"], float(z["residual"]), int(z["n_rows"]),
                         z["coefficients"], z["rows"].astype(np.float64), z["errors"])


def posterior_path(model_path: Path) -> Path:
    """Where :func:`fit_ace` keeps the posterior of ``model_path``: ``model.npz`` -> ``model.posterior.npz``."""
    name = model_path.name.removesuffix(".partial.npz").removesuffix(".npz")
    return model_path.with_name(f"{name}.posterior.npz")
