"""Conditions: what one sticking probability is computed for, and when a trajectory ends.

A :class:`RunSpec` fixes everything shared by the collision energies of one run directory (facet,
surface temperature, molecular state, model, integration settings, seed); each collision energy in it
is one condition. :class:`Termination` is the one home of the rule that starts and ends a trajectory
(initial height, scatter height, dissociation distance, maximum time, energy-error bound): the native
engine, the NQCDynamics bridge, the CLI and campaign files all read it.

Every field carries its help text (with units) and its command-line flag in its metadata, so the CLI
(:func:`pyscatter.cli.arguments.add_condition_arguments`) and campaign TOML keys are generated from these
dataclasses, and values are type-checked here with messages that name the field.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING, dataclass, field

FACETS = ("111", "100", "110", "211")
METALS = ("Al", "Ni", "Cu", "Rh", "Pd", "Ag", "Ir", "Pt", "Au")
"""The fcc metals a slab can be built of (each has thermal-expansion data in :mod:`pyscatter.initial.surface`)."""
MOLECULE_NAMES = ("H2", "D2", "HD")
FRICTION_MODELS = ("none", "ldfa")
"""Electronic friction on the molecule's atoms: none (adiabatic) or the local density friction approximation."""
DEFAULT_MODEL = "h2cu-ace"
"""The shipped linear ACE surrogate of the H2/Cu MACE model (see :data:`pyscatter.models.SHIPPED`)."""
H2_BOND = 0.7414
"""Å: the H2 bond length of the gas-phase end of a dissociation path and r0 of the surrogate basis's H-H pairs."""


class ConditionError(ValueError):
    """An impossible or unsupported condition; the message is one line."""


def option(help: str, default=MISSING, *, flag: str | None = None, key: str | None = None,
           minimum: float | None = None):
    """A dataclass field with its ``help`` (units included), CLI ``flag`` (default ``--field-name``),
    campaign-file ``key`` (default the field name) and the ``minimum`` its class accepts (None: none stated)."""
    metadata = {"help": help, "flag": flag, "key": key, "minimum": minimum}
    return field(metadata=metadata) if default is MISSING else field(default=default, metadata=metadata)


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def key_of(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def _check_type(f: dataclasses.Field, value, kind) -> object:
    """``value`` as ``kind`` (int, float, str, bool or ``X | None``), or ConditionError naming the field."""
    args = typing.get_args(kind)
    if type(None) in args:
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(kind, True)
    if not ok:
        name = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[kind]
        raise ConditionError(f"{key_of(f)} must be {name}, got {value!r}")
    return float(value) if kind is float else value


def check_fields(obj) -> None:
    """Type-check (and turn ints into floats where a float is asked) every field of a frozen dataclass."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        object.__setattr__(obj, f.name, _check_type(f, getattr(obj, f.name), hints[f.name]))


def _positive_finite(f_name: str, value: float, unit: str) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ConditionError(f"{f_name} must be a finite number > 0 {unit}, got {value}")


@dataclass(frozen=True)
class Termination:
    """When a trajectory starts and ends (Radova et al. 2025): the molecule starts ``initial_height`` above
    the mean top layer; it is *dissociated* once r(H-H) > ``dissociation_distance``, *scattered* once its
    centre of mass is more than ``scatter_height`` above the top layer and receding, *trapped* at
    ``max_time``, and *failed* once its total energy strays more than ``max_energy_error`` or anything
    becomes non-finite."""

    max_time: float = option("longest trajectory, fs", 3000.0)
    initial_height: float = option("molecular centre of mass above the top layer at t=0, Å", 7.0)
    scatter_height: float = option("centre-of-mass height above the top layer that ends a receding molecule as "
                                   "scattered, Å", 7.1)
    dissociation_distance: float = option("H-H distance that ends a trajectory as dissociated, Å", 2.25)
    max_energy_error: float = option("total-energy error that ends a trajectory as failed, eV", 1.0)

    def __post_init__(self) -> None:
        check_fields(self)
        _positive_finite("max-time", self.max_time, "fs")
        _positive_finite("initial-height", self.initial_height, "Å")
        _positive_finite("scatter-height", self.scatter_height, "Å")
        _positive_finite("dissociation-distance", self.dissociation_distance, "Å")
        _positive_finite("max-energy-error", self.max_energy_error, "eV")

    def max_steps(self, dt: float) -> int:
        """Time steps of ``dt`` fs in ``max_time``."""
        return int(round(self.max_time / dt))


@dataclass(frozen=True)
class RunSpec:
    """Settings shared by all collision energies of a run (see each field's help)."""

    surface: str = option(f"facet: {', '.join(FACETS)} (with --slab: the file's facet, any label)", key="facets")
    temperature: float = option("surface temperature, K", flag="--T", key="T")
    v: int = option("vibrational quantum number")
    J: int = option("rotational quantum number")
    molecule: str = option(f"{', '.join(MOLECULE_NAMES)}", "H2")
    model: str = option(f"{DEFAULT_MODEL} (the shipped H2/Cu ACE surrogate), emt (demonstration) or a model file",
                        DEFAULT_MODEL, key="models")
    metal: str = option(f"fcc metal of the slab: {', '.join(METALS)}", "Cu")
    slab: str | None = option("slab file ASE reads (extxyz, FHI-aims .in, POSCAR, cif), periodic in x and y, instead "
                              "of a built slab (default: none)", None)
    fixed_layers: int | None = option("fix the bottom N layers of the slab file (default: its FixAtoms constraint)",
                                      None)
    seed: int = option("root of every per-trajectory random stream (>= 0)", 0)
    dt: float = option("time step, fs", 0.1)
    lattice_constant: float | None = option("fcc lattice constant, Å (default: the model's at T; with --slab the "
                                            "file's slab is scaled to it)", None)
    n_snapshots: int = option("thermal slab snapshots the initial conditions draw from", 64,
                              flag="--snapshots", key="snapshots")
    free_flight: bool = option("propagate the molecule alone while it is out of the model's range of the surface "
                               "(it then meets its slab snapshot as drawn, which keeps the outcome distribution; the "
                               "same trajectory to ~1e-7 on a slab at rest; --no-free-flight integrates the whole "
                               "system throughout)", True,
                               flag="--no-free-flight")
    friction: str = option("electronic friction on the H atoms: none, or ldfa (local density friction approximation, "
                           "random force at the surface temperature)", "none")
    density: str | None = option("bare-surface electron density for --friction ldfa: a cube file (electrons/bohr³) of "
                                 "the frozen slab (default: independent free atoms following the slab atoms)", None)
    termination: Termination = field(default_factory=Termination)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.metal not in METALS:
            raise ConditionError(f"unknown metal {self.metal!r}: choose one of {', '.join(METALS)}")
        if self.model == DEFAULT_MODEL and self.metal != "Cu":
            raise ConditionError(f"the default model {DEFAULT_MODEL} is for H2 on Cu only: on {self.metal} choose "
                                 f"model emt (a demonstration potential) or a MACE/ACE model file with H and {self.metal}")
        if self.slab is None and self.surface not in FACETS:
            raise ConditionError(f"unknown facet {self.surface!r}: choose one of {', '.join(FACETS)}")
        if self.slab is not None and not self.surface.isalnum():
            raise ConditionError(f"facet label of a slab file must be letters and digits, got {self.surface!r}")
        if self.fixed_layers is not None and (self.slab is None or self.fixed_layers < 1):
            raise ConditionError(f"fixed layers apply to a slab file only and must be >= 1, got {self.fixed_layers}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConditionError(f"surface temperature must be a finite number > 0 K, got {self.temperature}")
        for name in ("v", "J", "seed"):
            if getattr(self, name) < 0:
                raise ConditionError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if self.molecule not in MOLECULE_NAMES:
            raise ConditionError(f"unknown molecule {self.molecule!r}: choose one of {', '.join(MOLECULE_NAMES)}")
        _positive_finite("dt", self.dt, "fs")
        if self.termination.max_time <= self.dt:
            raise ConditionError(f"need dt < max-time, got dt={self.dt} fs, max-time={self.termination.max_time} fs")
        if self.lattice_constant is not None:
            _positive_finite("lattice constant", self.lattice_constant, "Å")
        if self.n_snapshots <= 0:
            raise ConditionError(f"number of thermal snapshots must be > 0, got {self.n_snapshots}")
        if self.friction not in FRICTION_MODELS:
            raise ConditionError(f"unknown friction {self.friction!r}: choose one of {', '.join(FRICTION_MODELS)}")
        if self.density is not None and self.friction == "none":
            raise ConditionError("a surface density is used only with friction ldfa")

    @property
    def slab_label(self) -> str:
        """The metal and facet, e.g. ``Pt(111)``."""
        return f"{self.metal}({self.surface})"

    @property
    def max_steps(self) -> int:
        return self.termination.max_steps(self.dt)

    def as_dict(self) -> dict:
        """Flat JSON-ready fields (the termination's among them), the form a run directory stores."""
        flat = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "termination"}
        return {**flat, **dataclasses.asdict(self.termination)}

    @classmethod
    def from_dict(cls, fields: dict) -> "RunSpec":
        """The spec of :meth:`as_dict`'s form. A store written before free flight (friction) existed ran without it;
        one written before metals and slab files existed ran on a built Cu slab."""
        fields = {"free_flight": False, "friction": "none", "density": None, "metal": "Cu", **fields}
        names = {f.name for f in dataclasses.fields(Termination)}
        termination = Termination(**{k: v for k, v in fields.items() if k in names})
        return cls(**{k: v for k, v in fields.items() if k not in names}, termination=termination)


def spec_fields() -> list[dataclasses.Field]:
    """The fields of :class:`RunSpec` and its :class:`Termination`, flat, in CLI order."""
    return [f for f in dataclasses.fields(RunSpec) if f.name != "termination"] + list(dataclasses.fields(Termination))


def field_types() -> dict[str, object]:
    """Type of each flat field of :func:`spec_fields`."""
    return {**typing.get_type_hints(RunSpec), **typing.get_type_hints(Termination)}


def check_collision_energy(collision_energy: float) -> float:
    """Validate a collision energy in eV."""
    if isinstance(collision_energy, bool) or not isinstance(collision_energy, (int, float)) \
            or not (math.isfinite(collision_energy) and collision_energy > 0):
        raise ConditionError(f"collision energy must be a finite number > 0 eV, got {collision_energy!r}")
    return float(collision_energy)


MAX_TRAJECTORIES = 10**9
"""Most trajectories per condition (an index fits the store and the random stream's key)."""


def check_trajectories(n_trajectories: int) -> int:
    """Validate a number of trajectories per condition (1 to :data:`MAX_TRAJECTORIES`)."""
    if isinstance(n_trajectories, bool) or not isinstance(n_trajectories, int):
        raise ConditionError(f"trajectories must be an integer, got {n_trajectories!r}")
    if not 0 < n_trajectories <= MAX_TRAJECTORIES:
        raise ConditionError(f"trajectories must be between 1 and {MAX_TRAJECTORIES:,}, got {n_trajectories}")
    return n_trajectories


VALIDATION_TEMPERATURE = 925.0
"""K: the surface temperature of the validation presets (:data:`VALIDATION_ENERGIES`)."""
VALIDATION_ENERGIES = {"111": (0.3, 0.4, 0.5, 0.75), "211": (0.3, 0.45, 0.6, 0.85), "111v0": (0.5, 0.6, 0.75, 0.9),
                       "100": (0.25, 0.39, 0.46, 0.7), "110": (0.3, 0.4, 0.5, 0.6)}
"""Collision energies (eV) per condition at :data:`VALIDATION_TEMPERATURE` at which ``pyscatter surrogate validate``
compares a model with its teacher by default (run directories ``<kind>_Cu<condition>``), chosen so that P_stick spans
about 0.1-0.8: H2(v=1, J=1) on a facet ("111"), or H2(v=0, J=1) on it ("111v0"). Cu(100) and Cu(110) from a probe of
h2cu-ace (2026-12-07, 30-40 trajectories per energy): Cu(100) P = 7/40 at 0.3 eV and 19/30 at 0.45 eV; Cu(110) 4/40
at 0.3 eV and 12/27 at 0.45 eV. The teacher's first rounds on Cu(100) gave only 5/50, 5/49, 8/25 and 7/25 at 0.25,
0.32, 0.39 and 0.46 eV, so 0.7 eV replaced 0.32 eV (whose 49 teacher trajectories stay in the store)."""
