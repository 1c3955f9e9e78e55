"""MACE backend: exact agreement with mace's own ASE calculator, file handling, skin lists.

Units: Å, eV, eV/Å. The comparisons need ../shared/models/h2cu_mace_stark2023.model and the authors'
slabs (those tests skip without them, the reason printed; CI refuses to start without them); the
file-error tests need neither.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ase
import numpy as np
import pytest
import torch

from conftest import TEACHER as MODEL
from conftest import calculator_results, needs_teacher, read_structure
from pyscatter.models.base import Frame, ModelError, check_species

ROOT = Path(__file__).resolve().parents[1]
SLAB_PBC = (True, True, False)
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-7}  # eV and eV/Å

pytest.importorskip("mace")
pytest.importorskip("vesin")
pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # ase's FHI-aims reader
    pytest.mark.filterwarnings("ignore::UserWarning"),  # mace's TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD notice
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),  # mace/e3nn use TorchScript
]

from pyscatter.models.mace import compile_mace, load_mace, random_mace


def _with_h2(slab: ase.Atoms, height: float, bond: float, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``slab`` (54 Cu) plus H2 with centre ``height`` Å above the top layer."""
    top = slab.positions[:, 2].max()
    centre = slab.cell[0] * rng.random() + slab.cell[1] * rng.random()
    centre[2] = top + height
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return np.vstack([slab.positions, centre - 0.5 * bond * axis, centre + 0.5 * bond * axis])


KINDS = ("far", "near", "stretched", "dissociated", "rattled")


def _h2_variant(base: np.ndarray, top: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``base`` with H2 (last two atoms) moved: far, near, stretched, dissociated, or over rattled Cu.

    Heights of the H2 centre above the top layer ``top`` and bond lengths in Å.
    """
    height, bond = {
        "far": (7.0, rng.uniform(0.7, 0.8)),
        "near": (rng.uniform(1.0, 3.0), rng.uniform(0.7, 0.8)),
        "stretched": (rng.uniform(1.0, 2.0), rng.uniform(0.9, 1.8)),
        "dissociated": (0.9, rng.uniform(2.5, 3.6)),
        "rattled": (rng.uniform(2.0, 5.0), rng.uniform(0.7, 0.8)),
    }[kind]
    axis = rng.normal(size=3)
    if kind == "dissociated":
        axis[2] = 0.0
    axis /= np.linalg.norm(axis)
    centre = base[-2:].mean(axis=0)
    centre[:2] += rng.uniform(-2.0, 2.0, size=2)
    centre[2] = top + height
    x = base.copy()
    x[-2:] = [centre - 0.5 * bond * axis, centre + 0.5 * bond * axis]
    if kind == "rattled":
        x[:-2] += rng.normal(scale=0.08, size=x[:-2].shape)
    return x


def _h2_variants(base: np.ndarray, top: float, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` configurations (n, N, 3) cycling through :data:`KINDS`."""
    return np.stack([_h2_variant(base, top, KINDS[k % len(KINDS)], rng) for k in range(n)])


def _configuration_sets() -> list[tuple[str, Frame, np.ndarray]]:
    """56 configurations on 6 frames: (label, frame, positions (B, 56, 3) Å)."""
    rng = np.random.default_rng(7)
    sets = []
    for name, n in [("cu111_h7.0_full_925K.in", 16), ("cu211_h7.0_full_925K.in", 8)]:
        atoms = read_structure(name)
        top = atoms.positions[:-2, 2].max()
        sets.append(
            (
                name,
                Frame(atoms.numbers, atoms.cell.array, SLAB_PBC),
                _h2_variants(atoms.positions, top, rng, n),
            )
        )
    for name in ["cu111_0K.in", "cu100_0K.in", "cu110_0K.in", "cu211_0K.in"]:
        slab = read_structure(name)
        base = _with_h2(slab, 2.0, 0.74, rng)
        numbers = np.concatenate([slab.numbers, [1, 1]])
        positions = _h2_variants(base, slab.positions[:, 2].max(), rng, 8)
        sets.append((name, Frame(numbers, slab.cell.array, SLAB_PBC), positions))
    return sets


@pytest.fixture(scope="module")
def configurations() -> list[tuple[str, Frame, np.ndarray]]:
    return _configuration_sets()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the CI machine has 2 shared cores, and OpenMP spinning under
    contention slows these tests by 10x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mace_calculator_results(configurations, dtype: torch.dtype) -> list[tuple[np.ndarray, np.ndarray]]:
    """Energies (B,) and forces (B, N, 3) of every configuration set from mace's MACECalculator."""
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=str(MODEL), device="cpu", default_dtype=str(dtype)[6:])
    return [calculator_results(calc, frame, positions) for _, frame, positions in configurations]


@pytest.fixture(scope="module")
def references(configurations) -> dict:
    if not MODEL.is_file():
        pytest.skip(f"needs the published H2/Cu MACE model at {MODEL}")
    return {dtype: _mace_calculator_results(configurations, dtype) for dtype in (torch.float32, torch.float64)}


@pytest.fixture(
    scope="module",
    params=[(torch.float32, True), (torch.float64, True), (torch.float32, False), (torch.float64, False)],
    ids=["float32-scripted", "float64-scripted", "float32-eager", "float64-eager"],
)
def model_and_reference(request, references, configurations):
    dtype, script = request.param
    return load_mace(MODEL, trust=True, dtype=dtype, script=script), references[dtype], configurations


def _assert_matches(out, energies: np.ndarray, forces: np.ndarray, tol: float) -> None:
    assert out.energies.dtype == torch.float64 and out.forces.dtype == torch.float64
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=tol)
    np.testing.assert_allclose(out.forces.numpy(), forces, rtol=0, atol=tol)


def test_configuration_count(configurations):
    assert sum(len(p) for _, _, p in configurations) >= 50


@pytest.mark.parametrize("batch_size", [8, 1])
def test_equals_mace_calculator(model_and_reference, batch_size):
    model, reference, configurations = model_and_reference
    tol = TOLERANCE[model.dtype]
    for (label, frame, positions), (energies, forces) in zip(configurations, reference):
        for start in range(0, len(positions), batch_size):
            batch = slice(start, start + batch_size)
            out = model(frame, torch.from_numpy(positions[batch]))
            _assert_matches(out, energies[batch], forces[batch], tol)


def test_energy_only_call(model_and_reference):
    model, reference, configurations = model_and_reference
    (_, frame, positions), (energies, _) = configurations[0], reference[0]
    out = model(frame, torch.from_numpy(positions), compute_forces=False)
    assert out.forces is None
    np.testing.assert_allclose(out.energies.numpy(), energies, rtol=0, atol=TOLERANCE[model.dtype])


@needs_teacher
def test_attributes():
    model = load_mace(MODEL, trust=True, script=False)
    assert model.species == frozenset({1, 29})
    assert model.cutoff == 5.0
    assert model.dtype == torch.float32
    assert "2c8e8953a3d05cac94b8d9d8ded6f7884b66e71fd5b9251d139019ad6ccb158e" in model.identity
    assert model.name == MODEL.name
    assert load_mace(MODEL, trust=True, dtype=torch.float64, script=False).identity != model.identity


@needs_teacher
def test_float32_input_positions_are_not_modified(configurations):
    model = load_mace(MODEL, trust=True, script=False)
    _, frame, positions = configurations[0]
    x = torch.from_numpy(positions[:2]).float()
    out = model(frame, x)
    assert not x.requires_grad and out.energies.shape == (2,) and out.forces.shape == (2, 56, 3)


@needs_teacher
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_torchscript_equals_whole_module(tmp_path, dtype, configurations):
    compiled = tmp_path / "h2cu_compiled.model"
    compile_mace(MODEL, compiled, dtype, trust=True)
    scripted, eager = load_mace(compiled), load_mace(MODEL, trust=True, dtype=dtype, script=False)
    assert isinstance(scripted.module, torch.jit.ScriptModule)
    assert (scripted.dtype, scripted.species, scripted.cutoff) == (dtype, eager.species, eager.cutoff)
    _, frame, positions = configurations[0]
    a, b = scripted(frame, torch.from_numpy(positions)), eager(frame, torch.from_numpy(positions))
    tol = {torch.float32: 1e-5, torch.float64: 1e-12}[dtype]
    np.testing.assert_allclose(a.energies.numpy(), b.energies.numpy(), rtol=0, atol=tol)
    np.testing.assert_allclose(a.forces.numpy(), b.forces.numpy(), rtol=0, atol=tol)


@needs_teacher
def test_skin_list_equals_fresh_list(configurations):
    """Small moves reuse the lists; edges entering/leaving the cutoff are still exact."""
    reused = load_mace(MODEL, trust=True, skin=1.0, max_edges_per_pass=None, script=False)
    fresh = load_mace(MODEL, trust=True, skin=0.0, max_edges_per_pass=None, script=False)
    _, frame, positions = configurations[0]
    x = torch.from_numpy(positions[:8])
    reused(frame, x)
    reference = reused._cache.reference.clone()
    rng = np.random.default_rng(3)
    for step in range(4):
        x = x + torch.from_numpy(rng.uniform(-0.1, 0.1, size=x.shape))  # <= 0.4 Å in total
        a, b = reused(frame, x), fresh(frame, x)
        assert torch.equal(a.energies, b.energies) and torch.equal(a.forces, b.forces)
    assert torch.equal(reused._cache.reference, reference), "lists were rebuilt within the skin"
    x[0, -1] += torch.tensor([0.0, 0.0, 0.6])  # beyond skin/2: rebuild structure 0 only
    a, b = reused(frame, x), fresh(frame, x)
    assert torch.equal(a.energies, b.energies) and torch.equal(a.forces, b.forces)
    assert torch.equal(reused._cache.reference[0], x[0]) and torch.equal(
        reused._cache.reference[1:], reference[1:]
    )


@needs_teacher
def test_batch_split_into_passes_equals_one_pass(configurations):
    one_pass = load_mace(MODEL, trust=True, max_edges_per_pass=None, script=False)
    split = load_mace(MODEL, trust=True, max_edges_per_pass=5000, script=False)
    _, frame, positions = configurations[0]
    x = torch.from_numpy(positions)
    a, b = one_pass(frame, x), split(frame, x)
    assert len(split._cache.chunks) > 1 and len(one_pass._cache.chunks) == 1
    np.testing.assert_allclose(a.energies.numpy(), b.energies.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(a.forces.numpy(), b.forces.numpy(), rtol=0, atol=1e-4)


@needs_teacher
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/teacher_gpu.py measures one)")
def test_on_a_gpu_equals_the_cpu(configurations):
    """load_model(device="cuda"): one forward pass per batch on the GPU, the CPU's energies and forces (float32)."""
    from pyscatter.models import load_model

    cpu, gpu = (load_model(str(MODEL), trust=True, device=device) for device in ("cpu", "cuda"))
    assert gpu.max_edges_per_pass is None and gpu.identity == cpu.identity
    for _, frame, positions in configurations:
        x = torch.from_numpy(positions)
        a, b = cpu(frame, x), gpu(frame, x)
        assert b.energies.device.type == "cpu"
        np.testing.assert_allclose(b.energies.numpy(), a.energies.numpy(), rtol=0, atol=TOLERANCE[torch.float32])
        np.testing.assert_allclose(b.forces.numpy(), a.forces.numpy(), rtol=0, atol=TOLERANCE[torch.float32])


# ---- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["emt", "h2cu-ace"])
def test_a_cpu_only_model_refuses_another_device(spec):
    from pyscatter.models import load_model

    with pytest.raises(ModelError, match="runs on the CPU only, not on 'cuda'"):
        load_model(spec, device="cuda")


def test_an_unusable_device_is_a_one_line_error(small_model_file):
    from pyscatter.models import load_model

    with pytest.raises(ModelError, match="cannot use device 'nowhere'") as info:
        load_model(str(small_model_file), trust=True, device="nowhere")
    assert "\n" not in str(info.value)


def _assert_one_line_error(path, match: str, **kwargs) -> None:
    with pytest.raises(ModelError, match=match) as info:
        load_mace(path, **kwargs)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    _assert_one_line_error(tmp_path / "absent.model", "no MACE model file")


@pytest.fixture
def small_model_file(tmp_path) -> Path:
    """A random H/Cu MACE model saved as a whole module, as the published one is."""
    path = tmp_path / "small.model"
    torch.save(random_mace((1, 29), hidden_irreps="4x0e", max_ell=1), path)
    return path


def test_truncated_file(tmp_path, small_model_file):
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(small_model_file.read_bytes()[: small_model_file.stat().st_size // 2])
    _assert_one_line_error(truncated, "truncated")


def test_text_file(tmp_path):
    text = tmp_path / "notes.model"
    text.write_text("not a model\n")
    _assert_one_line_error(text, "not a torch model file")


def test_torch_file_without_mace_model(tmp_path):
    path = tmp_path / "dict.model"
    torch.save({"weights": torch.zeros(3)}, path)
    _assert_one_line_error(path, "holds a dict, not a MACE model")


def test_unsupported_dtype(small_model_file):
    _assert_one_line_error(small_model_file, "cannot run in torch.float16", dtype=torch.float16, trust=True)


def test_model_without_copper_fails_species_check(tmp_path):
    path = tmp_path / "h_o.model"
    torch.save(random_mace((1, 8), hidden_irreps="4x0e", max_ell=1), path)
    model = load_mace(path, script=False, trust=True)
    assert model.species == frozenset({1, 8})
    frame = Frame(np.array([29, 29, 1, 1]), np.eye(3) * 10.0, SLAB_PBC)
    with pytest.raises(ModelError, match="Cu"):
        check_species(model, frame.numbers)


@needs_teacher
def test_no_torch_load_policy_leaks_into_the_process():
    """Importing and loading must not leave TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set (mace does)."""
    script = (
        "import os\n"
        "from pyscatter.models.mace import load_mace\n"
        f"load_mace({str(MODEL)!r}, trust=True)\n"
        "assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ\n"
        "import torch\n"
        "assert slice not in torch.serialization.get_safe_globals()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=ROOT, timeout=60)
