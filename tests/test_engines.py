"""Engines chosen by name: a run on an engine without free flight runs and records the run without it, and the run's
model reference reaches its provenance."""

from dataclasses import dataclass

import pytest

from pyscatter.conditions import RunSpec, Termination
from pyscatter.engine.engines import ENGINES, NATIVE, engine_named
from pyscatter.store import RunReader
from pyscatter.workflows.run import run

SPEC = RunSpec(surface="111", temperature=300.0, v=0, J=0, model="emt", n_snapshots=2,
               termination=Termination(max_time=60.0))


@dataclass(frozen=True)
class WithoutFreeFlight:
    """The native engine behind an engine that declares no free flight; records the free_flight it is asked for."""

    asked: list
    name: str = "plain"
    free_flight: bool = False
    in_process: bool = True
    friction: bool = False

    def check(self) -> None:
        pass

    def __call__(self, model, initial, indices, on_finished, batch_size, dt, termination, free_flight, friction=None):
        self.asked.append(free_flight)
        NATIVE(model, initial, indices, on_finished, batch_size, dt, termination, free_flight)


def test_a_run_on_an_engine_without_free_flight_records_the_run_without_it(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setitem(ENGINES, "plain", WithoutFreeFlight(asked))
    assert SPEC.free_flight  # asked for, as by default
    run(SPEC, [0.3], 2, tmp_path, engine="plain")
    with RunReader(tmp_path) as store:
        assert store.spec.free_flight is False
        assert store.provenance["model_reference"] == {"name": "emt", "trust": False, "device": "cpu", "dtype": None,
                                                       "by_name": True}
    assert asked == [False]


def test_engines_by_name():
    assert engine_named("native").free_flight and not engine_named("nqcd").free_flight
    assert engine_named("nqcd").in_process and not engine_named("native").in_process
    with pytest.raises(ValueError, match="unknown engine 'verlet': choose native or nqcd"):
        engine_named("verlet")
