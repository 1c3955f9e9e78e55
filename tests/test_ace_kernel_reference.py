"""The compiled ACE kernel against stored numbers of the kernel before its restructuring (issue 33).

``tests/data/ace_kernel_reference.npz`` holds energies (eV) and forces (eV/Å) of ``h2cu-ace`` and of every
``h2cu-ace-committee`` member as the kernel at commit 7337d5e computed them (generator:
``tests/data/make_ace_kernel_reference.py``): H2 at several sites and heights over all four facets, dissociated
H atoms 1.0-1.6 Å from Cu, H atoms without H neighbours, and the authors' 925 K slabs with H2 approaching.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("ace_jax")

from pyscatter.models import load_model
from pyscatter.models.base import Frame

REFERENCE = np.load(Path(__file__).parent / "data" / "ace_kernel_reference.npz")
GROUPS = sorted({key.removesuffix("_energies") for key in REFERENCE.files if key.endswith("_energies")} - {"committee"})


def frame_of(group: str) -> Frame:
    return Frame(REFERENCE[f"{group}_numbers"], REFERENCE[f"{group}_cell"], (True, True, False))


@pytest.mark.parametrize("group", GROUPS)
def test_shipped_model_reproduces_the_stored_kernel_numbers(group):
    out = load_model("h2cu-ace")(frame_of(group), torch.as_tensor(REFERENCE[f"{group}_positions"]))
    np.testing.assert_allclose(out.energies.numpy(), REFERENCE[f"{group}_energies"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(out.forces.numpy(), REFERENCE[f"{group}_forces"], rtol=0, atol=1e-10)


def test_energy_only_calls_reproduce_the_stored_energies():
    model = load_model("h2cu-ace")
    for group in GROUPS:
        out = model(frame_of(group), torch.as_tensor(REFERENCE[f"{group}_positions"]), compute_forces=False)
        np.testing.assert_allclose(out.energies.numpy(), REFERENCE[f"{group}_energies"], rtol=0, atol=1e-10)


def test_committee_members_reproduce_the_stored_kernel_numbers():
    x = torch.as_tensor(REFERENCE["facet111_positions"][:4])
    out = load_model("h2cu-ace-committee").committee_energies_forces(frame_of("facet111"), x)
    np.testing.assert_allclose(out.energies.numpy(), REFERENCE["committee_energies"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(out.forces.numpy(), REFERENCE["committee_forces"], rtol=0, atol=1e-10)
