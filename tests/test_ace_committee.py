"""ACE committees: the file format, loading members, the all-members kernel, posterior draws, calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("ace_jax")

from test_ace import slab_with_h2
from pyscatter.models import committee_members, load_model
from pyscatter.models.base import ModelError
from pyscatter.surrogate.committee import (
    Posterior,
    bayes_deviations,
    calibration_scale,
    coverage,
    draw_members,
    load_posterior,
    pops_corrections,
    pops_deviations,
    readout_vector,
    save_posterior,
    write_committee,
)


@pytest.fixture(scope="module")
def committee_file(model_file, tmp_path_factory):
    """A committee of 4 members around the fixture model, deviations of the readouts' own size."""
    with np.load(model_file) as z:
        c = readout_vector(z)
    deviations = np.random.default_rng(2).normal(0.0, 0.02, (2, len(c)))
    path = tmp_path_factory.mktemp("committee") / "committee.npz"
    write_committee(model_file, np.concatenate([deviations, -deviations]), path, {"method": "test", "scale": 1.0})
    return str(path), deviations


def member_file(model_file, committee, k, directory) -> str:
    """Member k of ``committee`` as an ordinary ace-jax model file (its WB and Wpair as the file's readout)."""
    with np.load(model_file) as z:
        arrays = dict(z)
    with np.load(committee) as z:
        arrays["WB"], arrays["Wpair"] = z["committee_WB"][k], z["committee_Wpair"][k]
    path = directory / f"member{k}.npz"
    np.savez(path, **arrays)
    return str(path)


def test_all_members_at_once_equal_each_member_alone(model_file, committee_file, tmp_path):
    path, _ = committee_file
    frame, x = slab_with_h2(np.random.default_rng(3), 3)
    committee = load_model(path)
    together = committee.committee_energies_forces(frame, torch.as_tensor(x))
    assert together.energies.shape == (3, 4) and together.forces.shape == (3, 4, *x.shape[1:])
    assert committee_members(path) == [f"{path}#{k}" for k in range(4)]
    for k in (0, 3):  # a member of each sign of an antithetic pair
        member = load_model(committee_members(path)[k])
        alone = load_model(member_file(model_file, path, k, tmp_path))(frame, torch.as_tensor(x))
        assert member.name == f"committee.npz#{k}" and member.identity.endswith(f"#{k}")
        for out in (member(frame, torch.as_tensor(x)), alone):
            np.testing.assert_allclose(together.energies[:, k].numpy(), out.energies.numpy(), rtol=0, atol=1e-9)
            np.testing.assert_allclose(together.forces[:, k].numpy(), out.forces.numpy(), rtol=0, atol=1e-9)
    spread = together.energies.numpy().std(1)
    assert spread.min() > 1e-3  # the members differ
    mean = load_model(model_file)(frame, torch.as_tensor(x))
    np.testing.assert_allclose(together.energies.numpy().mean(1), mean.energies.numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(committee(frame, torch.as_tensor(x)).forces.numpy(), mean.forces.numpy(), rtol=0, atol=1e-12)
    energies_only = committee.committee_energies_forces(frame, torch.as_tensor(x), compute_forces=False)
    np.testing.assert_allclose(energies_only.energies.numpy(), together.energies.numpy(), rtol=0, atol=1e-9)


def test_member_forces_are_the_gradient_of_member_energies(committee_file):
    path, _ = committee_file
    frame, x = slab_with_h2(np.random.default_rng(4), 1)
    model = load_model(path)
    forces = model.committee_energies_forces(frame, torch.as_tensor(x)).forces.numpy()[0]
    h, atom = 1e-5, len(x[0]) - 1
    for d in range(3):
        moved = np.repeat(x, 2, 0)
        moved[0, atom, d] += h
        moved[1, atom, d] -= h
        e = model.committee_energies_forces(frame, torch.as_tensor(moved), compute_forces=False).energies.numpy()
        np.testing.assert_allclose(forces[:, atom, d], -(e[0] - e[1]) / (2 * h), rtol=0, atol=1e-6)


def test_members_of_other_specs_and_bad_member_numbers(model_file, committee_file):
    path, _ = committee_file
    assert committee_members(model_file) == [model_file] and committee_members("emt") == ["emt"]
    assert json.loads(bytes(np.load(path)["committee_json"]))["members"] == 4
    for spec, message in [(f"{path}#4", "members 0-3, not member #4"), (f"{model_file}#0", "no committee members")]:
        with pytest.raises(ModelError, match=message) as err:
            load_model(spec)
        assert "\n" not in str(err.value)
    frame, x = slab_with_h2(np.random.default_rng(0), 1)
    with pytest.raises(ModelError, match="not an ACE committee"):
        load_model(model_file).committee_energies_forces(frame, torch.as_tensor(x))


def linear_problem(rng: np.random.Generator, n: int = 400, p: int = 6, noise: float = 0.1, lam: float = 2.0):
    """y = A c_true + Gaussian noise, ridge fit with prior diag(gamma^2): the Posterior and its closed-form covariance."""
    a = rng.normal(size=(n, p))
    y = a @ rng.normal(size=p) + noise * rng.normal(size=n)
    prior = rng.uniform(0.5, 2.0, p)
    hessian = a.T @ a + lam * np.diag(prior)
    c = np.linalg.solve(hessian, a.T @ y)
    post = Posterior(a.T @ a, a.T @ y, lam, prior, noise**2, n, c, a, y - a @ c)
    return post, noise**2 * np.linalg.inv(hessian)


def test_bayes_committee_covariance_is_the_closed_form_posterior(tmp_path):
    post, covariance = linear_problem(np.random.default_rng(5))
    save_posterior(tmp_path / "model.posterior.npz", post)
    stored = load_posterior(tmp_path / "model.posterior.npz")
    np.testing.assert_allclose(stored.normal, post.normal, rtol=0, atol=1e-12)
    n = 40000
    draws = bayes_deviations(stored, n, np.random.default_rng(6))
    empirical = draws.T @ draws / n
    # entries of a sample covariance scatter by about sqrt((S_ii S_jj + S_ij^2) / n)
    tolerance = 5 * np.sqrt((np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2) / n)
    assert np.all(np.abs(empirical - covariance) < tolerance)
    members = draw_members(stored, 8, "bayes", 0)
    np.testing.assert_allclose(members.mean(0), 0.0, atol=1e-15)


def test_pops_corrections_fit_their_row_and_the_box_holds_them():
    post, _ = linear_problem(np.random.default_rng(7), n=60, p=4)
    corrections = pops_corrections(post)
    np.testing.assert_allclose(np.einsum("mp,mp->m", post.rows, post.coefficients + corrections), post.rows @ post.coefficients + post.errors,
                               rtol=0, atol=1e-10)  # each corrected fit passes through its own row's target
    draws = pops_deviations(post, 20000, np.random.default_rng(8))
    _, _, modes = np.linalg.svd(corrections, full_matrices=False)
    bound = np.abs(corrections @ modes.T).max(0)
    assert np.all(np.abs(draws @ modes.T) <= bound * (1 + 1e-9))
    np.testing.assert_allclose(np.abs(draws @ modes.T).max(0), bound, rtol=0.01)  # uniform: reaches the box's faces


def test_coverage_and_calibration_scale_by_hand():
    rng = np.random.default_rng(9)
    deviations = np.array([1.0, -1.0, 1.0, -1.0])  # sd 1 about a mean of 0
    members = 5.0 + deviations[None, :] * np.ones((20000, 1))
    reference = 5.0 + 3.0 * rng.normal(size=20000)  # errors three times the spread
    table = coverage(members, reference)
    assert abs(table["within_1sd"] - 0.261) < 0.01 and abs(table["within_2sd"] - 0.495) < 0.01
    scale = calibration_scale(members, reference)
    assert abs(scale - 3 * 1.96 / 2) < 0.05
    assert abs(coverage(members, reference, scale)["within_2sd"] - 0.95) < 0.002


def test_every_shipped_member_keeps_a_bound_molecule():
    """Each member's gas-phase H2 (its own EBK quantisation, the start of every trajectory) against the mean's: the
    levels may differ, but each must exist and lie within 50 meV of the mean's."""
    from pyscatter.conditions import RunSpec
    from pyscatter.initial.sampler import quantised_molecule

    spec = RunSpec(surface="111", temperature=925.0, v=1, J=1)
    mean = quantised_molecule(spec, load_model("h2cu-ace"))[1].energy
    for member in committee_members("h2cu-ace-committee"):
        assert abs(quantised_molecule(spec, load_model(member))[1].energy - mean) < 0.05, member
