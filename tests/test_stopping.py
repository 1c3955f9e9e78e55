"""Stopping criteria against hand-built geometries (independent of the engine)."""

import numpy as np
import torch
from ase.build import fcc111

from pyscatter.engine.geometry import minimum_image
from pyscatter.engine.termination import StoppingCriteria, bond_length, classify
from pyscatter.outcomes import Outcome


def _criteria(cell, max_steps=100):
    return StoppingCriteria(
        molecule=(2, 3),
        top_layer=torch.tensor([0, 1]),
        cell=torch.as_tensor(cell, dtype=torch.float64),
        pbc=(True, True, False),
        masses=torch.tensor([63.5, 63.5, 1.008, 1.008], dtype=torch.float64),
        dissociation_distance=2.25,
        scatter_height=7.1,
        max_steps=max_steps,
    )


def test_minimum_image_matches_ase_on_a_skewed_cell():
    from ase.geometry import find_mic

    cell = fcc111("Cu", (3, 3, 2), vacuum=10).cell.array
    rng = np.random.default_rng(1)
    d = rng.uniform(-8, 8, size=(200, 3))
    d[:, 2] = rng.uniform(-2, 2, 200)
    ref, ref_len = find_mic(d, cell, pbc=(True, True, False))
    ours = minimum_image(torch.as_tensor(d), torch.as_tensor(cell), (True, True, False)).norm(dim=-1).numpy()
    short = ref_len < 3.0  # exact below half a cell height, which is all the criteria need
    np.testing.assert_allclose(ours[short], ref_len[short], atol=1e-12)
    assert np.all(ours >= ref_len - 1e-12)


def test_bond_across_the_cell_boundary_is_short():
    cell = np.diag([7.0, 7.0, 40.0])
    pos = torch.zeros(1, 4, 3, dtype=torch.float64)
    pos[0, 2] = torch.tensor([0.2, 3.0, 15.0], dtype=torch.float64)
    pos[0, 3] = torch.tensor([6.6, 3.0, 15.0], dtype=torch.float64)  # 0.6 Å apart through the boundary
    assert abs(float(bond_length(pos, _criteria(cell))[0]) - 0.6) < 1e-12


def _system(h_separation, com_height, vz, cell=np.diag([7.0, 7.0, 40.0])):
    pos = torch.zeros(1, 4, 3, dtype=torch.float64)
    pos[0, 0, 2] = pos[0, 1, 2] = 10.0
    z = 10.0 + com_height
    pos[0, 2] = torch.tensor([3.0 - h_separation / 2, 3.0, z])
    pos[0, 3] = torch.tensor([3.0 + h_separation / 2, 3.0, z])
    vel = torch.zeros_like(pos)
    vel[0, 2:, 2] = vz
    return pos, vel


def test_each_outcome():
    crit = _criteria(np.diag([7.0, 7.0, 40.0]))
    cases = [
        ((0.74, 5.0, -0.01, 10), Outcome.RUNNING),
        ((2.30, 1.0, 0.0, 10), Outcome.DISSOCIATED),
        ((2.20, 1.0, 0.0, 10), Outcome.RUNNING),
        ((0.74, 7.2, 0.01, 10), Outcome.SCATTERED),
        ((0.74, 7.2, -0.01, 10), Outcome.RUNNING),  # above but still approaching
        ((0.74, 7.0, 0.01, 10), Outcome.RUNNING),
        ((0.74, 3.0, 0.0, 100), Outcome.TRAPPED),
        ((2.30, 3.0, 0.0, 100), Outcome.DISSOCIATED),  # dissociation at t_max counts as dissociated
    ]
    for (sep, height, vz, steps), expected in cases:
        pos, vel = _system(sep, height, vz)
        got, _, _ = classify(pos, vel, torch.tensor([steps]), crit)
        assert Outcome(int(got[0])) is expected, (sep, height, vz, steps)
