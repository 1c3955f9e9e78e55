"""The engines that integrate a condition's trajectories to their outcomes, behind one protocol, chosen by name.

``native``: pyscatter's batched velocity Verlet (:func:`~pyscatter.engine.runner.run_dynamics`), with free
flight. ``nqcd``: NQCDynamics.jl through juliacall (:func:`~pyscatter.engine.nqcd.run_dynamics_nqcd`), in the
calling process and without free flight: a run on it records ``free_flight`` false.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the command line reads ENGINES without torch
    from pyscatter.conditions import Termination
    from pyscatter.engine.batch import InitialConditions, OnFinished
    from pyscatter.models.base import ForceModel


class Engine(Protocol):
    """Integrates trajectories of one condition: every index of ``indices`` from ``initial.sample(index)`` to its
    outcome, results (which depend only on the index) reported to ``on_finished(results, force_calls)``.

    name: its name in :data:`ENGINES`.  free_flight: whether it can integrate the molecule alone while it is out of
    the model's range of the slab.  in_process: it runs in the calling process only (no worker processes).
    """

    name: str
    free_flight: bool
    in_process: bool

    def check(self) -> None:
        """Raise ValueError (one line) if the engine cannot run here."""
        ...

    def __call__(self, model: ForceModel, initial: InitialConditions, indices: Iterable[int], on_finished: OnFinished,
                 batch_size: int, dt: float, termination: Termination, free_flight: bool) -> None:
        """Run ``indices`` at time step ``dt`` fs, ``batch_size`` systems at a time; ``free_flight`` only where
        supported (:attr:`free_flight`)."""
        ...


@dataclass(frozen=True)
class ImportedEngine:
    """An engine whose dynamics function (``"module:function"``, called as ``run_dynamics``) is imported on the first
    call, so that choosing an engine by name loads neither torch nor Julia."""

    name: str
    free_flight: bool
    in_process: bool
    dynamics: str
    needs_julia: bool = False

    def check(self) -> None:
        """Loads Julia and the engine's packages once where it needs them; refuses in one line if they cannot be."""
        if self.needs_julia:
            from pyscatter.models.julia_session import JuliaUnavailable, julia

            try:
                julia()
            except JuliaUnavailable as err:
                raise ValueError(" ".join(str(err).split())) from None

    def __call__(self, model: ForceModel, initial: InitialConditions, indices: Iterable[int], on_finished: OnFinished,
                 batch_size: int, dt: float, termination: Termination, free_flight: bool) -> None:
        if free_flight and not self.free_flight:
            raise ValueError(f"the {self.name} engine has no free flight: run it with free_flight=False")
        module, function = self.dynamics.split(":")
        dynamics = getattr(import_module(module), function)
        arguments = (model, initial, indices, on_finished, batch_size, dt, termination)
        dynamics(*arguments, free_flight) if self.free_flight else dynamics(*arguments)


NATIVE = ImportedEngine("native", free_flight=True, in_process=False, dynamics="pyscatter.engine.runner:run_dynamics")
"""pyscatter's batched velocity Verlet with continuous batching and free flight."""

NQCD = ImportedEngine("nqcd", free_flight=False, in_process=True, needs_julia=True,
                      dynamics="pyscatter.engine.nqcd:run_dynamics_nqcd")
"""NQCDynamics.jl through juliacall, in this process, without free flight."""

ENGINES: dict[str, Engine] = {engine.name: engine for engine in (NATIVE, NQCD)}
"""Every engine by name."""


def engine_named(name: str) -> Engine:
    """The engine called ``name`` (:data:`ENGINES`); ValueError naming the choices otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}: choose {' or '.join(ENGINES)}") from None

