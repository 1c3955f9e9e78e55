"""A run's model as one value: what loads it, how, and (once loaded) its identity.

A :class:`ModelRef` travels from the command line or the Python API through the run to its worker processes
(which load the model from it, or receive the object it carries) and into the run's provenance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pyscatter.models.base import ForceModel


@dataclass(frozen=True)
class ModelRef:
    """A model by name, or a model object under the name a run records for it.

    name: a shipped model's name, ``"emt"``, a model file's path or ``"NAME#k"`` (see
    :func:`pyscatter.models.load_model`); for a model given as an object, the name the run records
    (:func:`pyscatter.models.model_object`: ``ase:<class>``, ``object:<name>``).
    trust: load a pickled model file (runs code from it).  device: where a torch model is evaluated (e.g. ``"cuda"``).
    dtype: ``"float32"`` or ``"float64"``, None for the model's own.  identity: the model's identity once loaded
    (None before). model: the loaded model object, not part of the value (equality, hash, repr).
    by_name: whether a worker process can load the model from ``name`` (else ``model`` is sent to it pickled).
    """

    name: str
    trust: bool = False
    device: str = "cpu"
    dtype: str | None = None
    identity: str | None = None
    model: ForceModel | None = field(default=None, compare=False, repr=False)
    by_name: bool = True

    @classmethod
    def given(cls, model) -> "ModelRef":
        """A model object (a :class:`ForceModel` or an ASE calculator), named as :func:`~pyscatter.models.model_object`
        names it; workers receive it pickled."""
        from pyscatter.models import model_object

        name, wrapped = model_object(model)
        return cls(name, identity=wrapped.identity, model=wrapped, by_name=False)

    def load(self) -> tuple["ModelRef", ForceModel]:
        """(this reference with the model and its identity, the model): the object it holds, else loaded by name
        (a one-line :class:`~pyscatter.models.base.ModelError` if it cannot be)."""
        from pyscatter.models import load_model

        model = self.model if self.model is not None else load_model(self.name, self.dtype, self.trust, self.device)
        return dataclasses.replace(self, identity=model.identity, model=model), model

    def for_workers(self) -> "ModelRef":
        """What a worker process receives: without the loaded object where the worker can load it by name."""
        return dataclasses.replace(self, model=None) if self.by_name else self

    def provenance(self) -> dict:
        """How the run loads its model, for its provenance (beside its name, identity and class)."""
        return {"model_reference": {"name": self.name, "trust": self.trust, "device": self.device, "dtype": self.dtype,
                                    "by_name": self.by_name}}
