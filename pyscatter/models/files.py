"""Model files: their kind, read from their bytes (never from their name), and which ones the user trusts.

Kinds: ``torchscript`` (zip with ``code/`` or ``constants.pkl``), ``torch-zip`` (``torch.save`` zip:
``data.pkl``, no ``code/``), ``torch-pickle`` (legacy ``torch.save`` or any pickle: protocol magic),
``npz`` (zip of ``.npy`` members: ace-jax linear ACE), ``yace`` (ML-PACE YAML text) and ``json``
(an ACEpotentials.jl model). Unpickling a ``torch-zip`` or ``torch-pickle`` file can run any code
in it: such a file is loaded only if trusted, by the caller's say-so (``--trust-model``) or by its
sha256 in the user's trust file (:func:`trust_file`, ``pyscatter model trust FILE``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path

from pyscatter.models.base import ModelError

PICKLED_KINDS = ("torch-zip", "torch-pickle")
"""Kinds whose loading runs code from the file (whole pickled modules)."""
CONFIG_DIR_VARIABLE = "PYSCATTER_CONFIG_DIR"
TRUST_FILE_NAME = "trusted_models.json"
_HEAD = 4096  # bytes read to tell text kinds apart
COMMITTEE_ARRAYS = ("committee_WB", "committee_Wpair", "committee_json")
"""Arrays of an ACE committee file beside the usual ones (which hold the committee's mean, a valid single model):
the members' many-body readouts (K, n_B, NZ) and pair readouts (K, n_pair, NZ), and a JSON record (uint8) of
how they were drawn (``pyscatter surrogate committee``; ``members`` is K)."""


def file_kind(path: str | os.PathLike) -> str:
    """The kind of the model file at ``path`` from its content; :class:`ModelError` (one line) if none."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelError(f"{path} is a truncated or corrupt zip archive ({exc})") from None
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("/constants.pkl") or n == "constants.pkl" or "code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return "torch-zip"
        raise ModelError(f"{path} is a zip archive but neither a torch nor an .npz model file")
    if head.startswith(b"PK"):
        raise ModelError(f"{path} is a truncated or corrupt zip archive")
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch-pickle"
    text = head.decode("utf-8", errors="replace")  # a multi-byte character may be cut at the end
    if "\0" not in text:
        if text.lstrip().startswith("{"):
            return "json"
        if re.search(r"^(elements|E0|bonds|embeddings|functions)\s*:", text, re.MULTILINE):
            return "yace"
    raise ModelError(
        f"{path} is not a model file: not a torch model file (TorchScript or torch.save), nor an ace-jax .npz, "
        "ML-PACE .yace or ACEpotentials .json"
    )


def committee_record(path: str | os.PathLike) -> dict | None:
    """The JSON record of an ACE committee file (:data:`COMMITTEE_ARRAYS`), None for any other file or path."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(bytes(z["committee_json"]).decode()) if "committee_json" in z.files else None
    except (OSError, ValueError, AttributeError):
        return None


def config_dir() -> Path:
    """``$PYSCATTER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/pyscatter``, else ``~/.config/pyscatter``."""
    if os.environ.get(CONFIG_DIR_VARIABLE):
        return Path(os.environ[CONFIG_DIR_VARIABLE])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "pyscatter"


def trust_path() -> Path:
    """The user's trust file: JSON ``{"sha256": {digest: path when trusted}}``."""
    return config_dir() / TRUST_FILE_NAME


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _trusted() -> dict[str, str]:
    path = trust_path()
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["sha256"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path} is not a pyscatter trust file ({type(exc).__name__}); remove or fix it") from None


def is_trusted(digest: str) -> bool:
    """Whether the sha256 hex ``digest`` is in the user's trust file."""
    return digest in _trusted()


def trust_file(path: str | os.PathLike) -> str:
    """Record the sha256 of the file at ``path`` in the user's trust file; returns the digest."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    digest = sha256(path.read_bytes())
    entries = _trusted()
    entries[digest] = str(path.resolve())
    target = trust_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps({"sha256": entries}, indent=1, sort_keys=True) + "\n")
    os.replace(temporary, target)
    return digest


def check_trusted(spec: str, trust: bool = False) -> None:
    """Refuse (:func:`untrusted_error`) the model ``spec`` if it is a pickled file neither ``trust``ed nor in the trust
    file; reads its bytes only (to check models before a run that loads them later)."""
    path = Path(spec)
    if not trust and path.is_file() and file_kind(path) in PICKLED_KINDS and not is_trusted(sha256(path.read_bytes())):
        raise untrusted_error(path)


def untrusted_error(path: str | os.PathLike) -> ModelError:
    """The one-line refusal of a pickled model file that is not trusted."""
    return ModelError(
        f"{path} is a pickled model: loading it runs code from the file. If you trust it, pass --trust-model "
        f"(trust=True) or record it with `pyscatter model trust {path}`; better, convert it once with "
        f"`pyscatter model compile {path} OUT --trust-model` and use the TorchScript OUT, which loads without trust"
    )
