"""Pickled model files run code when loaded: refused unless trusted (flag or trust file), payload never run.

Malicious files are built with ``torch.save`` (zip and legacy format) of an object whose
``__reduce__`` opens a marker file for writing: the marker exists only if the payload ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyscatter.cli.main import main
from pyscatter.models import ModelError, load_model
from pyscatter.models.files import file_kind, trust_path

MACE_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "h2cu_mace_stark2023.model"


class Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch) -> Path:
    """A trust file of this test's own."""
    monkeypatch.setenv("PYSCATTER_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture(params=["zip", "legacy"])
def malicious(request, tmp_path) -> tuple[Path, Path]:
    """(model file, marker the payload creates), in torch's zip or legacy format, named like a model."""
    marker, path = tmp_path / f"ran-{request.param}", tmp_path / f"innocent-{request.param}.model"
    torch.save(Payload(marker), path, _use_new_zipfile_serialization=request.param == "zip")
    return path, marker


def test_untrusted_pickle_is_refused_and_its_payload_never_runs(malicious, capsys):
    path, marker = malicious
    assert file_kind(path) in ("torch-zip", "torch-pickle")
    with pytest.raises(ModelError) as err:
        load_model(str(path))
    message = str(err.value)
    assert "\n" not in message and "--trust-model" in message and "pyscatter model trust" in message
    assert "pyscatter model compile" in message
    assert main(["model", "compile", str(path), str(path.with_suffix(".pt"))]) == 2
    assert "--trust-model" in capsys.readouterr().err
    assert not marker.exists()


def test_trust_flag_reaches_torch_load(malicious):
    path, marker = malicious
    with pytest.raises(ModelError, match="not a MACE model"):  # unpickled (payload ran), then refused
        load_model(str(path), trust=True)
    assert marker.exists()


def test_trust_file_reaches_torch_load(malicious, config_dir, capsys):
    path, marker = malicious
    assert main(["model", "trust", str(path)]) == 0
    assert trust_path() == config_dir / "trusted_models.json" and trust_path().is_file()
    assert not marker.exists()  # trusting reads bytes only
    with pytest.raises(ModelError, match="not a MACE model"):
        load_model(str(path))
    assert marker.exists()


def test_a_changed_file_is_no_longer_trusted(malicious):
    path, marker = malicious
    assert main(["model", "trust", str(path)]) == 0
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="--trust-model"):
        load_model(str(path))
    assert not marker.exists()


def test_config_dir_defaults_to_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("PYSCATTER_CONFIG_DIR")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert trust_path() == tmp_path / "xdg" / "pyscatter" / "trusted_models.json"


@pytest.mark.skipif(not MACE_FILE.is_file(), reason=f"needs {MACE_FILE}")
@pytest.mark.filterwarnings("ignore")
def test_published_mace_model_needs_trust_and_its_torchscript_does_not(tmp_path, capsys):
    with pytest.raises(ModelError, match="--trust-model"):
        load_model(str(MACE_FILE))
    model = load_model(str(MACE_FILE), trust=True)
    assert model.species == frozenset({1, 29})
    compiled = tmp_path / "compiled.bin"  # any name: the kind is read from the content
    assert main(["model", "compile", str(MACE_FILE), str(compiled), "--trust-model"]) == 0
    assert file_kind(compiled) == "torchscript"
    assert load_model(str(compiled)).species == frozenset({1, 29})
