"""Surrogate workflow of Stark et al. (2023): a teacher model's data, a linear ACE fit, its errors.

Stages, each resumable (its result is a file in the build directory, reused when present):

1. ``sample``: teacher trajectories through pyscatter's own engine over facets x surface
   temperatures x states (v, J) x collision energies; the teacher's energies and forces of every
   structure are recorded every ``record_every_fs`` (``frames/<condition>.npz``).
1b. ``approach`` (:mod:`.placed`): H2 over the thermal slabs from 2.5 to 7.5 Å, each structure with a copy
   lifted out of range, so the teacher's interaction energy on the way in is in the data (``approach/``).
1c. ``atoms`` (:mod:`.placed`): two separate H atoms in and on the thermal slabs, down to 4 Å under the top
   layer, where trajectories (stopped at the dissociation distance) never take them (``atoms/``).
2. ``select``: k-means on a structural descriptor of the H atoms; the frame nearest each
   centroid trains, a random disjoint set of other frames (which include reactive ones) is held
   out (``selection.npz``).
3. ``neb``: a CI-NEB minimum-energy path per facet, H2 dissociating over a bridge site of the
   frozen ideal slab, every image labelled by the teacher (``neb_<facet>.npz``); and the
   teacher's gas-phase H2 curve (``gas_phase_h2.npz``), which the molecule is quantised on.
   ``mep_neighbourhood``: randomly displaced copies of every MEP image, labelled by the teacher
   (``mep_samples_<facet>.npz``; a quarter held out): trajectories end at the dissociation
   distance, so without them the adsorbed end of the path is missing from the data.
4. ``fit``: a linear ACE model built and fitted with ace-jax (design rows from
   ``ace_jax.fit.rows.linear_rows``; weighted least squares with ace-jax's smoothness prior,
   its strength chosen on a validation split; each approach pair adds a row for its interaction energy, and the
   separate H atoms are fitted at ``atom_weight``) -> ``model.npz`` and ``model.posterior.npz``.
5. ``evaluate``: MAE/RMSE of energies, forces and forces on H against the teacher on the held-out
   frames (all, reactive, the held-out MEP samples and separate H atoms), the interaction energy of the
   held-out approach pairs, the surrogate's CI-NEB barrier against the
   teacher's (with both bands' residual forces), and the cost of one force call of either
   (``errors.json``, ``report.md``).

The fit keeps what its posterior needs beside the model (``model.posterior.npz``), from which
:mod:`.committee` (``pyscatter surrogate committee``) draws calibrated committees.

Modules: :mod:`.settings`, :mod:`.frames` (files of the build directory), :mod:`.sample`,
:mod:`.placed`, :mod:`.select`, :mod:`.paths`, :mod:`.fit`, :mod:`.posterior`, :mod:`.evaluate`, :mod:`.pipeline` (:func:`build`),
:mod:`.committee`.
Units: Å, eV, fs, K; energies per atom in the error table are meV/atom, forces meV/Å.
"""

__all__ = ["SurrogateSettings", "build"]

_API = {"build": "pyscatter.surrogate.pipeline", "SurrogateSettings": "pyscatter.surrogate.settings"}


def __getattr__(name: str):
    """``build`` and ``SurrogateSettings``, imported on first use (the CLI reads the settings without the pipeline)."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pyscatter.surrogate' has no attribute {name!r}")
