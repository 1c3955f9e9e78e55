"""Stage 4, ``fit``: a linear ACE model built and fitted with ace-jax -> ``model.npz``.

Design rows from ``ace_jax.fit.rows.linear_rows``; weighted least squares with ace-jax's
smoothness prior, its strength chosen on a validation split. Å, eV, eV/Å.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np

from pyscatter.surrogate.settings import CU_BOND, H2_BOND, Progress, SurrogateSettings

def default_r0(elements: list[int]) -> np.ndarray:
    """Per-pair radial length scale (Å) of the basis: mean of the two elements' bond lengths (H2: 0.74, Cu: 2.6)."""
    bond = {1: H2_BOND, 29: CU_BOND}
    return np.array([[0.5 * (bond[a] + bond[b]) for b in elements] for a in elements])


def fit_ace(train: list, settings: SurrogateSettings, out: Path, progress: Progress) -> dict:
    """Fit a linear ACE model with ace-jax to labelled Atoms ``train``; writes ``out`` (npz). Returns fit info.

    Rows: per-atom energies weighted by ``energy_weight``, force components by 1. Prior: ace-jax's
    smoothness prior Gamma (``Basis.gamma``), coefficients c = argmin |W(Ac - y)|^2 + lam |Gamma c|^2
    with lam chosen on a random ``validation_fraction`` of the training frames, then refitted on all.
    """
    import jax
    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model
    from ace_jax.eval import load
    from ace_jax.fit.data import build_dataset, load_configs
    from ace_jax.fit.inducing import GPConfig
    from ace_jax.fit.pipeline.data import lsq_e0
    from ace_jax.fit.pipeline.export import linear_arrays_from_mean
    from ace_jax.fit.rows import linear_rows

    started = time.perf_counter()
    elements = [1, 29]
    basis = build_model(elements, settings.order, settings.max_degree, rcut=settings.cutoff, r0=default_r0(elements))
    buffer = io.BytesIO()
    save_npz(buffer, basis)
    buffer.seek(0)
    model, meta, arrays = load(buffer)
    configs = load_configs(train)
    e0 = lsq_e0(configs, elements, float(meta["rcut"]), log=lambda *a: None)
    batch = 8
    dataset = build_dataset(configs, meta, e0, batch, pack="off", log=lambda *a: None)
    cfg = GPConfig(r0=1.0, rcut=float(meta["rcut"]), n_B=meta["n_B"], n_pair=meta["n_pair"], NZ=len(elements), C=batch)
    rows = jax.jit(lambda m, b: linear_rows(m, cfg, b)[0])
    n_columns = cfg.len_basis
    rng = np.random.default_rng(settings.seed)
    validation = rng.random(len(configs)) < settings.validation_fraction
    normal = {False: np.zeros((n_columns, n_columns)), True: np.zeros((n_columns, n_columns))}
    rhs = {False: np.zeros(n_columns), True: np.zeros(n_columns)}
    held_a, held_y = [], []
    for k in range(dataset.n_batches):
        b = jax.tree.map(lambda a, k=k: a[k], dataset)
        r = rows(model, b)
        members = np.asarray(b.cfg_mask)
        config_index = k * batch + np.arange(batch)
        is_val = np.where(members, validation[np.minimum(config_index, len(configs) - 1)], False)
        weight_e = settings.energy_weight / np.maximum(np.asarray(b.n_atoms), 1.0) * members
        node_cfg = np.asarray(b.node_cfg)
        node_val = np.append(is_val, False)[node_cfg]
        weight_f = np.repeat(np.asarray(b.node_mask, float), 3)
        a = np.concatenate([np.asarray(r.E) * weight_e[:, None], np.asarray(r.F).reshape(-1, n_columns) * weight_f[:, None]])
        y = np.concatenate([np.asarray(b.y_E) * weight_e, np.asarray(b.y_F).reshape(-1) * weight_f])
        in_val = np.concatenate([is_val, np.repeat(node_val, 3)])
        for flag in (False, True):
            rows_of = in_val == flag
            normal[flag] += a[rows_of].T @ a[rows_of]
            rhs[flag] += a[rows_of].T @ y[rows_of]
        held_a.append(a[in_val])
        held_y.append(y[in_val])
        if k % 20 == 0:
            progress(f"fit: design rows {min((k + 1) * batch, len(configs))}/{len(configs)} frames")
    held_a, held_y = np.concatenate(held_a), np.concatenate(held_y)
    prior = np.diag(np.asarray(basis.gamma, float) ** 2)
    scale = np.trace(normal[False]) / max(np.trace(prior), 1e-300)
    lambdas = scale * 10.0 ** np.arange(-14.0, -1.0)
    losses = []
    for lam in lambdas:
        c = _solve(normal[False] + lam * prior, rhs[False])
        losses.append(float(np.mean((held_a @ c - held_y) ** 2)) if len(held_y) else 0.0)
    best = lambdas[int(np.argmin(losses))]
    coefficients = _solve(normal[False] + normal[True] + best * prior, rhs[False] + rhs[True])
    np.savez(out, **linear_arrays_from_mean(arrays, e0, cfg, coefficients))
    info = {"n_basis": int(n_columns), "n_train_frames": len(configs), "lambda_over_scale": float(best / scale),
            "validation_rms_weighted": float(np.sqrt(min(losses))), "fit_seconds": time.perf_counter() - started}
    progress(f"fit: {n_columns} basis functions, {len(configs)} frames, {info['fit_seconds']:.0f} s")
    return info


def _solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    try:
        return cho_solve(cho_factor(matrix), rhs)
    except LinAlgError:
        return np.linalg.lstsq(matrix, rhs, rcond=None)[0]

