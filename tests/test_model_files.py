"""Model files are told apart by their content, whatever their names; anything else is one-line ModelError."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pyscatter.models import BACKENDS, SHIPPED, ModelError, load_model
from pyscatter.models.files import file_kind
from pyscatter.models.julia import JuliaACEModel


class Tiny(torch.nn.Module):
    def forward(self, x):
        return 2 * x


def make(kind: str, path) -> None:
    """Write a small file of ``kind`` at ``path``."""
    if kind == "torchscript":
        torch.jit.save(torch.jit.script(Tiny()), str(path))
    elif kind in ("torch-zip", "torch-pickle"):
        torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=kind == "torch-zip")
    elif kind == "npz":
        with open(path, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez(f, a=np.zeros(3), b=np.ones(2))
    elif kind == "yace":
        path.write_text("elements: [H, Cu]\nE0: [0.0, 0.0]\nembeddings: {}\nbonds: {}\nfunctions: {}\n")
    else:
        path.write_text(json.dumps({"model_spec": {"elements": ["Cu", "H"], "rcut": 5.0}, "model_parameters": []}))


@pytest.mark.parametrize("kind", sorted(BACKENDS))
@pytest.mark.parametrize("name", ["model.bin", "model", "model.yace", "model.npz", "model.json", "model.pt"])
def test_kind_comes_from_the_content_not_the_name(kind, name, tmp_path):
    path = tmp_path / name
    make(kind, path)
    assert file_kind(path) == kind


def test_each_kind_reaches_its_backend(tmp_path):
    shipped = tmp_path / "surrogate.model"  # a linear ACE .npz under another name
    shutil.copy(SHIPPED["h2cu-ace"], shipped)
    assert type(load_model(str(shipped))).__name__ == "ACEModel"
    julia = tmp_path / "ace.txt"
    make("json", julia)
    assert isinstance(load_model(str(julia)), JuliaACEModel)
    weights = tmp_path / "weights.npz"  # a torch.save zip named like an .npz: safe load, then refused
    make("torch-zip", weights)
    with pytest.raises(ModelError, match="holds a dict, not a MACE model"):
        load_model(str(weights))


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00\x01garbage" * 50, b"PK\x03\x04truncated", "plain text, no model\n".encode(), b"\x89PNG\r\n\x1a\n"],
    ids=["empty", "binary", "broken-zip", "text", "png"],
)
def test_garbage_is_refused_in_one_line(content, tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_model(str(path))
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_zip_of_other_things_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "archive.model"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelError, match="zip archive but neither"):
        load_model(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(str(tmp_path / "absent.model"))
