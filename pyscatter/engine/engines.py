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
    from pyscatter.models.friction import LDFA


class Engine(Protocol):
    """Integrates trajectories of one condition: every index of ``indices`` from ``initial.sample(index)`` to its
    outcome, results (which depend only on the index) reported to ``on_finished(results, force_calls)``.

    name: its name in :data:`ENGINES`.  free_flight: whether it can integrate the molecule alone while it is out of
    the model's range of the slab.  in_process: it runs in the calling process only (no worker processes).
    friction: whether it integrates electronic friction (:mod:`~pyscatter.engine.friction`).
    """

    name: str
    free_flight: bool
    in_process: bool
    friction: bool

    def check(self) -> None:
        """Raise ValueError (one line) if the engine cannot run here."""
        ...

    def __call__(self, model: ForceModel, initial: InitialConditions, indices: Iterable[int], on_finished: OnFinished,
                 batch_size: int, dt: float, termination: Termination, free_flight: bool,
                 friction: LDFA | None = None) -> None:
        """Run ``indices`` at time step ``dt`` fs, ``batch_size`` systems at a time; ``free_flight`` and ``friction``
        only where supported (:attr:`free_flight`, :attr:`friction`)."""
        ...


@dataclass(frozen=True)
class ImportedEngine:
    """An engine whose dynamics function (``"module:function"``, called as ``run_dynamics``) is imported on the first
    call, so that choosing an engine by name loads neither torch nor Julia."""

    name: str
    free_flight: bool
    in_process: bool
    dynamics: str
    friction: bool = False
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
                 batch_size: int, dt: float, termination: Termination, free_flight: bool,
                 friction: LDFA | None = None) -> None:
        if free_flight and not self.free_flight:
            raise ValueError(f"the {self.name} engine has no free flight: run it with free_flight=False")
        if friction is not None and not self.friction:
            raise ValueError(f"the {self.name} engine has no electronic friction: run it with friction none")
        module, function = self.dynamics.split(":")
        dynamics = getattr(import_module(module), function)
        arguments = (model, initial, indices, on_finished, batch_size, dt, termination)
        if self.free_flight:
            dynamics(*arguments, free_flight, friction=friction)
        else:
            dynamics(*arguments)


NATIVE = ImportedEngine("native", free_flight=True, in_process=False, friction=True,
                        dynamics="pyscatter.engine.runner:run_dynamics")
"""pyscatter's batched velocity Verlet with continuous batching, free flight and electronic friction."""

NQCD = ImportedEngine("nqcd", free_flight=False, in_process=True, needs_julia=True,
                      dynamics="pyscatter.engine.nqcd:run_dynamics_nqcd")
"""NQCDynamics.jl through juliacall, in this process, without free flight or friction."""

ENGINES: dict[str, Engine] = {engine.name: engine for engine in (NATIVE, NQCD)}
"""Every engine by name."""


def check_friction(engine: Engine, friction: str) -> None:
    """Refuse (ValueError, one line) electronic ``friction`` (a :data:`~pyscatter.conditions.FRICTION_MODELS` name)
    on an engine that does not integrate it."""
    if friction != "none" and not engine.friction:
        raise ValueError(f"the {engine.name} engine has no electronic friction: use the native engine for friction "
                         f"{friction}")


def engine_named(name: str) -> Engine:
    """The engine called ``name`` (:data:`ENGINES`); ValueError naming the choices otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}: choose {' or '.join(ENGINES)}") from None

