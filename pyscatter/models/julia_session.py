"""The Julia session of pyscatter (juliacall and the ``PyScatterNQCD`` module) and its units.

Julia works in Hartree atomic units (bohr, hartree, electron mass, atomic time). ``AU_X`` is the atomic
unit of X expressed in pyscatter's ASE units (Å, eV, amu, Å per ASE time unit, fs): ``x_au = x / AU_X``.
Used by the Julia ACE models (:mod:`pyscatter.models.julia`) and the NQCDynamics engine
(:mod:`pyscatter.engine.nqcd`).
"""

from __future__ import annotations

import math
import os

from ase import units

from pyscatter.optional import import_optional

AU_LENGTH = units.Bohr  # Å
AU_ENERGY = units.Hartree  # eV
AU_MASS = units._me / units._amu  # amu
AU_TIME = AU_LENGTH * math.sqrt(AU_MASS / AU_ENERGY)  # ASE time units (Å sqrt(amu/eV))
AU_VELOCITY = AU_LENGTH / AU_TIME  # Å per ASE time unit
AU_FORCE = AU_ENERGY / AU_LENGTH  # eV/Å
AU_TIME_FS = AU_TIME / units.fs  # fs


class JuliaUnavailable(RuntimeError):
    """juliacall or the Julia packages of the NQCDynamics engine cannot be loaded."""


_MODULE = None


def julia():
    """The ``PyScatterNQCD`` Julia module, loaded on first use.

    The first call resolves ``pyscatter/juliapkg.json`` (juliacall downloads Julia if none is
    found, then installs and precompiles NQCDynamics, ACEpotentials and their dependencies).
    Julia's thread count is ``PYTHON_JULIACALL_THREADS``; with several threads, signal handling
    is handed to Julia (``PYTHON_JULIACALL_HANDLE_SIGNALS=yes``) as juliacall requires.
    """
    global _MODULE
    if _MODULE is None:
        if os.environ.get("PYTHON_JULIACALL_THREADS", "1") != "1":
            os.environ.setdefault("PYTHON_JULIACALL_HANDLE_SIGNALS", "yes")
        juliacall = import_optional("juliacall")
        try:
            jl = juliacall.newmodule("PyScatter")
            jl.seval("using PyScatterNQCD")
        except Exception as err:  # a failed Julia download or package resolution
            raise JuliaUnavailable(
                f"the nqcd engine needs the Julia packages of pyscatter/juliapkg.json "
                f"(pip install -e '.[julia]' from a source checkout): {type(err).__name__}: {err}"
            ) from err
        _MODULE = jl.PyScatterNQCD
    return _MODULE
