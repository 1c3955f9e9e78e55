"""Freeze fine-tuning of a MACE foundation model ("MACE-freeze", Radova et al. 2025) with mace's own trainer.

The trained parameters of a MACE model form four groups, in the order the paper freezes them
(its f-levels); ``freeze=K`` keeps the first K bit-identical to the foundation model:

==========  =======================================================  =====================
freeze K    frozen module name prefixes                              mace ``--freeze``
==========  =======================================================  =====================
0           (none)                                                   (not passed)
1           ``node_embedding``                                       1
2           ``node_embedding``, ``interactions``                     5
3           ``node_embedding``, ``interactions``, ``products``       6
==========  =======================================================  =====================

mace numbers the model's top-level modules ``node_embedding`` (1), ``radial_embedding``,
``spherical_harmonics``, ``atomic_energies_fn`` (2-4, nothing trained), ``interactions`` (5),
``products`` (6), ``readouts`` (7), and its ``--freeze N`` freezes modules 1..N. K = 4 would
freeze the readouts too, leaving nothing to train, and is refused. Not trained parameters are
refitted to the training data by mace as in any of its fine-tunings: the isolated-atom energies
(``E0s``) and the energy shift of the scale-shift block.

Training runs ``python -m mace.cli.run_train`` (``--foundation_model`` and ``--freeze`` as in
mace-torch 0.3.16) in a child process: mace's trainer sets process-wide state (torch's default dtype,
random seeds, root-logger handlers, and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` to unpickle the
foundation model), none of which may leak into the caller. The foundation file is checked and
the result compiled in this process through :mod:`pyscatter.models.mace` (scoped ``torch.load``
policy). Training runs in float64 (mace's default; the foundation is converted, exactly, before
mace reads it, as mace's E0 estimation needs it in the training dtype); the TorchScript output
is in ``dtype``, by default the foundation's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from pyscatter.models.base import ModelError
from pyscatter.models.files import PICKLED_KINDS, file_kind
from pyscatter.models.mace import _first_line, _read_module, compile_mace

PARAMETER_GROUPS = ("node_embedding", "interactions", "products", "readouts")
MACE_FREEZE = {0: None, 1: 1, 2: 5, 3: 6}  # freeze K -> mace run_train --freeze
MACE_MODEL_NAME = "finetuned"


def frozen_prefixes(freeze: int) -> tuple[str, ...]:
    """Module name prefixes of the parameters that ``freeze`` keeps fixed."""
    if freeze not in MACE_FREEZE:
        raise ModelError(
            f"freeze must be 0-{max(MACE_FREEZE)} (frozen groups: {', '.join(PARAMETER_GROUPS[:-1])});"
            f" {len(PARAMETER_GROUPS)} would freeze every trained parameter"
        )
    return PARAMETER_GROUPS[:freeze]


def finetune_mace(
    foundation: str | os.PathLike,
    train: str | os.PathLike,
    out: str | os.PathLike,
    *,
    freeze: int,
    epochs: int,
    valid: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    e0s: str = "estimated",
    energy_key: str = "energy",
    forces_key: str = "forces",
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    log: str | os.PathLike | None = None,
    trust: bool = False,
) -> Path:
    """Fine-tune the whole-module MACE file ``foundation`` on ``train`` and write TorchScript to ``out``.

    train, valid: extended XYZ (any ASE format) with energies (eV) and forces (eV/Å) under
        ``energy_key`` / ``forces_key`` (ASE's own ``energy``/``forces`` by default, as
        ``pyscatter model eval`` writes them); without ``valid`` mace holds out 10 % of train.
    freeze: number of leading parameter groups kept fixed (module docstring).
    dtype: of the written model (default: the foundation's).
    e0s: mace's ``--E0s`` ("estimated": foundation E0s corrected on the training set,
        "average", "foundation", or a dict string).
    batch_size, lr: mace's defaults unless given. All elements of the foundation are kept.
    log: where mace's training log goes (default: ``out`` + ``.log``).
    trust: unpickle ``foundation`` (runs code from it) even if its sha256 is not in the user's trust file.
    Returns the path of the written model. Raises :class:`ModelError` (one line) for unusable
    inputs or a failed training run.
    """
    prefixes = frozen_prefixes(freeze)
    foundation, train, out = Path(foundation), Path(train), Path(out)
    if epochs < 1:
        raise ModelError(f"epochs must be >= 1, got {epochs}")
    kind = file_kind(foundation) if foundation.is_file() else None
    if kind is not None and kind not in PICKLED_KINDS:
        what = "TorchScript" if kind == "torchscript" else f"a {kind} file"
        raise ModelError(f"{foundation} is {what}; fine-tuning needs the whole-module (torch.save) file")
    original = _read_module(foundation, "cpu", trust)[0]
    for path in (train, valid):
        if path is not None:
            _check_labelled(Path(path), energy_key, forces_key)
    dtype = dtype or next(original.parameters()).dtype
    original = original.to(torch.float64)  # exact; mace trains in float64 and needs a float64 foundation
    log = Path(log) if log is not None else out.with_name(out.name + ".log")

    with tempfile.TemporaryDirectory(prefix="pyscatter-finetune-") as work:
        foundation64 = Path(work) / "foundation_float64.model"
        torch.save(original, foundation64)
        command = [
            sys.executable, "-m", "mace.cli.run_train",
            "--name", MACE_MODEL_NAME,
            "--work_dir", work,
            "--foundation_model", str(foundation64),
            "--foundation_model_elements", "True",
            "--multiheads_finetuning", "False",
            "--train_file", str(train.resolve()),
            "--energy_key", energy_key,
            "--forces_key", forces_key,
            "--E0s", e0s,
            "--max_num_epochs", str(epochs),
            "--default_dtype", "float64",
            "--device", "cpu",
            "--seed", str(seed),
            "--save_cpu",
        ]
        if valid is not None:
            command += ["--valid_file", str(Path(valid).resolve())]
        if MACE_FREEZE[freeze] is not None:
            command += ["--freeze", str(MACE_FREEZE[freeze])]
        if batch_size is not None:
            command += ["--batch_size", str(batch_size), "--valid_batch_size", str(batch_size)]
        if lr is not None:
            command += ["--lr", str(lr)]
        with open(log, "w") as stream:
            done = subprocess.run(command, check=False, stdout=stream, stderr=subprocess.STDOUT, cwd=work)
        if done.returncode != 0:
            raise ModelError(f"mace training failed ({_last_line(log)}); see {log}")
        trained = Path(work) / f"{MACE_MODEL_NAME}.model"
        _check_frozen(original, _read_module(trained, "cpu", trust=True)[0], prefixes)  # written here
        compile_mace(trained, out, dtype, trust=True)
    return out


def _check_labelled(path: Path, energy_key: str, forces_key: str) -> None:
    """ModelError unless every configuration in ``path`` has an energy and forces (mace would
    otherwise train on the ones it has, with a logged error for each it has not)."""
    from ase.io import read

    if not path.is_file():
        raise ModelError(f"no training data file at {path}")
    try:
        configurations = read(path, index=":")
    except Exception as exc:  # ASE raises many kinds for unreadable files
        raise ModelError(f"cannot read {path}: {_first_line(exc)}") from exc
    for k, atoms in enumerate(configurations):
        results = atoms.calc.results if atoms.calc is not None else {}
        if (energy_key not in atoms.info and energy_key not in results) or (
            forces_key not in atoms.arrays and forces_key not in results
        ):
            raise ModelError(f"{path}: configuration {k} lacks energy {energy_key!r} or forces {forces_key!r}")


def _check_frozen(original: torch.nn.Module, trained: torch.nn.Module, prefixes: tuple[str, ...]) -> None:
    """ModelError unless every parameter under ``prefixes`` is bit-identical in both models."""
    before, after = original.state_dict(), trained.state_dict()
    for name, value in before.items():
        if name.startswith(prefixes) and not torch.equal(value, after[name].to(value.dtype)):
            raise ModelError(f"mace changed the frozen parameter {name}; this mace version freezes differently")


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
