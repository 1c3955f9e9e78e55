"""Force models behind one protocol; :func:`load_model` turns a ``--model`` argument into one."""

from __future__ import annotations

from pathlib import Path

from pyscatter.models.base import ASECalculatorModel, ForceModel, Frame, ModelError, ModelOutput

EMT_WARNING = (
    "model 'emt' is ASE's effective-medium theory: a qualitative demonstration potential "
    "(no H2 dissociation barrier on Cu(111)); pass --model PATH (MACE, ACE) for real work"
)


def load_model(spec: str, dtype: str | None = None) -> ForceModel:
    """``"emt"`` or the path of a model file (kind detected from its content), as a :class:`ForceModel`."""
    if spec == "emt":
        from pyscatter.models.emt import EMTModel

        return EMTModel()
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"model file not found: {spec}")
    if path.suffix == ".json":
        from pyscatter.engine.nqcd import JuliaACEModel

        return JuliaACEModel(path)
    if path.suffix in (".npz", ".yace"):
        try:
            from pyscatter.models.ace import load_ace
        except ImportError as err:
            raise ModelError(f"{spec}: ACE models need ace-jax (pip install 'pyscatter[ace]'): {err}") from None
        import torch

        return load_ace(str(path), dtype=getattr(torch, dtype) if dtype else torch.float64)
    import torch

    from pyscatter.models.mace import load_mace

    return load_mace(str(path), dtype=getattr(torch, dtype) if dtype else None)


__all__ = ["ASECalculatorModel", "ForceModel", "Frame", "ModelError", "ModelOutput", "load_model", "EMT_WARNING"]
