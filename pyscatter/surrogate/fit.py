"""Stage 4, ``fit``: a linear ACE model built and fitted with ace-jax -> ``model.npz``.

Design rows from ``ace_jax.fit.rows.linear_rows``; weighted least squares with ace-jax's
smoothness prior, its strength chosen on a validation split. Å, eV, eV/Å.
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import numpy as np

from pyscatter.surrogate.posterior import Posterior, RowSample, load_posterior, posterior_path, save_posterior
from pyscatter.surrogate.settings import CU_BOND, H2_BOND, Progress, SurrogateSettings

PRIOR_CHOSEN, PRIOR_FIXED = "chosen on the validation split", "fixed"
"""How a fit's prior strength was set (``prior`` in ``fit.json``; absent in builds before it was recorded: chosen)."""

def default_r0(elements: list[int]) -> np.ndarray:
    """Per-pair radial length scale (Å) of the basis: mean of the two elements' bond lengths (H2: 0.74, Cu: 2.6)."""
    bond = {1: H2_BOND, 29: CU_BOND}
    return np.array([[0.5 * (bond[a] + bond[b]) for b in elements] for a in elements])


def design_rows(model, meta: dict, e0: np.ndarray, structures: list, energy_weight: float, batch: int = 8):
    """Weighted design rows of labelled Atoms ``structures`` under the ace-jax basis ``model`` (``ace_jax.eval.load``
    of a basis or model file, with its ``meta``) and isolated-atom energies ``e0`` (eV), ``batch`` structures at a time.

    Yields (a (n, P), y (n,), structure (n,)) per batch: each structure's energy row (weight ``energy_weight`` per
    atom, i.e. ``energy_weight / n_atoms`` on the energy in eV) and its 3 N force rows (weight 1, eV/Å), targets
    y the weighted labels minus the e0 reference, and the index of each row's structure; padding rows are dropped.
    A structure's ``info["weight"]`` (default 1) multiplies all its rows.
    A linear model with readout vector c (the columns' layout of ``linear_arrays_from_mean``) predicts a @ c.
    """
    import jax
    from ace_jax.fit.data import build_dataset, load_configs
    from ace_jax.fit.rows import linear_rows

    dataset = build_dataset(load_configs(structures), meta, e0, batch, pack="off", log=lambda *a: None)
    structure_weight = np.array([float(s.info.get("weight", 1.0)) for s in structures])
    cfg = meta_config(meta, len(e0), batch)
    rows = jax.jit(lambda m, b: linear_rows(m, cfg, b)[0])
    for k in range(dataset.n_batches):
        b = jax.tree.map(lambda a, k=k: a[k], dataset)
        r = rows(model, b)
        members = np.asarray(b.cfg_mask)
        config_index = k * batch + np.arange(batch)
        node_index = np.append(config_index, -1)[np.asarray(b.node_cfg)]
        weight_e = energy_weight / np.maximum(np.asarray(b.n_atoms), 1.0)
        a = np.concatenate([np.asarray(r.E) * weight_e[:, None], np.asarray(r.F).reshape(-1, cfg.len_basis)])
        y = np.concatenate([np.asarray(b.y_E) * weight_e, np.asarray(b.y_F).reshape(-1)])
        index = np.concatenate([np.where(members, config_index, -1), np.repeat(np.where(np.asarray(b.node_mask), node_index, -1), 3)])
        keep = index >= 0
        scale = structure_weight[index[keep]]
        yield a[keep] * scale[:, None], y[keep] * scale, index[keep]


def fit_ace(train: list, settings: SurrogateSettings, out: Path, progress: Progress) -> dict:
    """Fit a linear ACE model with ace-jax to labelled Atoms ``train``; writes ``out`` (npz) and, beside it,
    what its posterior needs (:func:`pyscatter.surrogate.posterior.save_posterior`: ``<out stem>.posterior.npz``).
    Returns fit info.

    Rows: :func:`design_rows`. Prior: ace-jax's smoothness prior Gamma (``Basis.gamma``), coefficients
    c = argmin |W(Ac - y)|^2 + lam |Gamma c|^2 with lam chosen on a random ``validation_fraction`` of the
    training frames, then refitted on all. Frames with ``info["validate"] = False`` are always fitted, never
    validated on: the separate H atoms under the surface (:func:`pyscatter.surrogate.placed.atoms`), whose
    extrapolation residuals otherwise pick a lam 10^4 times larger that doubles the held-out H-force MAE.
    Two frames with the same ``info["pair"]`` (an approach pair: H2 near the slab and lifted out of range) add
    one more row, the difference of their energy rows times ``settings.interaction_weight``: the teacher's
    interaction energy, free of the slab's own error. Such rows are always fitted, never validated on.
    """
    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model
    from ace_jax.eval import load
    from ace_jax.fit.data import load_configs
    from ace_jax.fit.pipeline.data import lsq_e0
    from ace_jax.fit.pipeline.export import linear_arrays_from_mean

    started = time.perf_counter()
    elements = [1, 29]
    basis = build_model(elements, settings.order, settings.max_degree, rcut=settings.cutoff, r0=default_r0(elements))
    buffer = io.BytesIO()
    save_npz(buffer, basis)
    buffer.seek(0)
    model, meta, arrays = load(buffer)
    e0 = lsq_e0(load_configs(train), elements, float(meta["rcut"]), log=lambda *a: None)
    rng = np.random.default_rng(settings.seed)
    validation = (rng.random(len(train)) < settings.validation_fraction) & np.array([a.info.get("validate", True) for a in train])
    normal, rhs, yy, n_rows = {False: 0.0, True: 0.0}, {False: 0.0, True: 0.0}, 0.0, 0
    held_a, held_y = [], []
    pair_rows: dict[str, list] = {}
    sample = RowSample(settings.seed)
    batch = 8
    for k, (a, y, index) in enumerate(design_rows(model, meta, e0, train, settings.energy_weight, batch)):
        in_val = validation[index]
        for flag in (False, True):
            normal[flag] = normal[flag] + a[in_val == flag].T @ a[in_val == flag]
            rhs[flag] = rhs[flag] + a[in_val == flag].T @ y[in_val == flag]
        yy, n_rows = yy + float(y @ y), n_rows + len(y)
        sample.add(a, y)
        held_a.append(a[in_val])
        held_y.append(y[in_val])
        for i in np.unique(index):
            if settings.interaction_weight > 0 and "pair" in train[i].info:  # weight 0: no rows at all
                energy_row = np.flatnonzero(index == i)[0]  # design_rows puts a structure's energy row first
                pair_rows.setdefault(train[i].info["pair"], []).append((a[energy_row], y[energy_row]))
        if k % 20 == 0:
            progress(f"fit: design rows {min((k + 1) * batch, len(train))}/{len(train)} frames")
    held_a, held_y = np.concatenate(held_a), np.concatenate(held_y)
    for (near_a, near_y), (far_a, far_y) in (rows for rows in pair_rows.values() if len(rows) == 2):
        a = settings.interaction_weight * (near_a - far_a)
        y = settings.interaction_weight * (near_y - far_y)
        normal[False], rhs[False] = normal[False] + np.outer(a, a), rhs[False] + a * y
        yy, n_rows = yy + float(y * y), n_rows + 1
    prior = np.asarray(basis.gamma, float) ** 2
    scale = np.trace(normal[False]) / max(prior.sum(), 1e-300)
    strengths = 10.0 ** np.arange(-14.0, -1.0) if settings.prior_strength is None else np.array([settings.prior_strength])
    lambdas = scale * strengths
    losses = []
    for lam in lambdas:
        c = _solve(normal[False] + lam * np.diag(prior), rhs[False])
        losses.append(float(np.mean((held_a @ c - held_y) ** 2)) if len(held_y) else 0.0)
    best = lambdas[int(np.argmin(losses))]
    total, total_rhs = normal[False] + normal[True], rhs[False] + rhs[True]
    coefficients = _solve(total + best * np.diag(prior), total_rhs)
    np.savez(out, **linear_arrays_from_mean(arrays, e0, meta_config(meta, len(elements)), coefficients))
    residual = _squares(coefficients, total, total_rhs, yy) / n_rows
    save_posterior(posterior_path(out), Posterior(total, total_rhs, float(best), prior, float(residual), n_rows, coefficients,
                                                  *sample.rows(coefficients)))
    info = {"n_basis": len(coefficients), "n_train_frames": len(train), "lambda_over_scale": float(best / scale),
            "prior": PRIOR_CHOSEN if settings.prior_strength is None else PRIOR_FIXED,
            "validation_rms_weighted": float(np.sqrt(min(losses))), "fit_seconds": time.perf_counter() - started}
    progress(f"fit: {len(coefficients)} basis functions, {len(train)} frames, {info['fit_seconds']:.0f} s")
    return info


def refit_ace(model_path: Path, info: dict, prior_strength: float, progress: Progress) -> dict:
    """Solve the fit of ``model_path`` again at ``prior_strength`` (lambda / scale) from its posterior
    (:func:`posterior_path`: the normal equations of every row), without design rows; rewrites the model and its
    posterior. ``info``: the fit's info (``fit.json``); returns it updated (its validation error is unknown: None).

    The scale is the original fit's (its lambda over its ``lambda_over_scale``), so the result is the model that
    :func:`fit_ace` makes at a fixed ``prior_strength``. The posterior's row sample keeps its float32 rows; their
    errors are moved by the change of readout, rows @ (c_old - c_new).
    """
    from ace_jax.eval import load
    from ace_jax.fit.pipeline.export import linear_arrays_from_mean

    started = time.perf_counter()
    info = dict(info)
    post = load_posterior(posterior_path(model_path))
    lam = prior_strength * post.lam / info["lambda_over_scale"]
    coefficients = _solve(post.normal + lam * np.diag(post.prior), post.rhs)
    _, meta, arrays = load(str(model_path))
    targets = post.residual * post.n_rows - _squares(post.coefficients, post.normal, post.rhs, 0.0)  # y.y of every row
    residual = _squares(coefficients, post.normal, post.rhs, targets) / post.n_rows
    errors = post.errors - post.rows @ (coefficients - post.coefficients)
    partial, partial_posterior = (model_path.with_name(f"{model_path.stem}.{kind}partial.npz") for kind in ("", "posterior."))
    np.savez(partial, **linear_arrays_from_mean(arrays, np.asarray(arrays["E0"]), meta_config(meta, len(arrays["E0"])),
                                                coefficients))
    save_posterior(partial_posterior, dataclasses.replace(post, lam=float(lam), residual=float(residual),
                                                          coefficients=coefficients, errors=errors))
    partial_posterior.replace(posterior_path(model_path))
    partial.replace(model_path)
    info.update(lambda_over_scale=float(prior_strength), prior=PRIOR_FIXED, validation_rms_weighted=None,
                refitted_from_lambda_over_scale=info["lambda_over_scale"], refit_seconds=time.perf_counter() - started)
    progress(f"fit: solved again at prior strength {prior_strength:g} (was {info['refitted_from_lambda_over_scale']:g}), "
             f"{info['refit_seconds']:.0f} s")
    return info


def meta_config(meta: dict, nz: int, batch: int = 1):
    """ace-jax's column layout and batch shape (``GPConfig``) of the basis described by ``meta`` with ``nz`` elements."""
    from ace_jax.fit.inducing import GPConfig

    return GPConfig(r0=1.0, rcut=float(meta["rcut"]), n_B=meta["n_B"], n_pair=meta["n_pair"], NZ=nz, C=batch)


def _squares(coefficients: np.ndarray, normal: np.ndarray, rhs: np.ndarray, targets: float) -> float:
    """|A c - y|^2 from the normal equations: y.y (``targets``) - 2 c.(A^T y) + c.(A^T A) c."""
    return targets - 2.0 * coefficients @ rhs + coefficients @ normal @ coefficients


def _solve(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    try:
        return cho_solve(cho_factor(matrix), rhs)
    except LinAlgError:
        return np.linalg.lstsq(matrix, rhs, rcond=None)[0]

