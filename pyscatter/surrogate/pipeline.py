"""The whole build: every stage in order in one directory, each resumed from its file when present.

The settings and the teacher's identity are recorded in ``settings.json``; a directory holding
another build is refused. Teacher-labelled frames placed in ``extra/`` before the build (``*.npz`` in the
format of ``frames/``, e.g. a committee working directory's frames of the conditions a model is validated
at) join the training set whole; their names and sha256 are recorded with the settings.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pyscatter.models.base import ForceModel, ModelError, check_species
from pyscatter.surrogate.evaluate import evaluate
from pyscatter.surrogate.fit import PRIOR_CHOSEN, fit_ace, refit_ace
from pyscatter.surrogate.frames import load_frames, load_mep_samples, load_neb, pick
from pyscatter.surrogate.placed import APPROACH, ATOMS, approach, atoms
from pyscatter.surrogate.paths import gas_phase_h2, mep_neighbourhood, neb
from pyscatter.surrogate.sample import sample
from pyscatter.surrogate.select import select
from pyscatter.surrogate.settings import Progress, SurrogateError, SurrogateSettings

EXTRA = "extra"
"""Folder of a build directory whose teacher-labelled frames all join the training set."""


def build(directory: str | Path, teacher: ForceModel, settings: SurrogateSettings, progress: Progress = print) -> dict:
    """Run (or resume) every stage in ``directory``; returns the evaluation (see :func:`evaluate`)."""
    from pyscatter.models.ace import load_ace

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    check_species(teacher, np.array([1, 29]))
    recorded = directory / "settings.json"
    wanted = {"settings": settings.as_dict(), "teacher": teacher.identity}
    extra_files = sorted((directory / EXTRA).glob("*.npz"))
    if extra_files:
        wanted["extra"] = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in extra_files}
    if recorded.exists() and _without_prior(json.loads(recorded.read_text())) != _without_prior(wanted):
        raise SurrogateError(f"{directory} holds a build with other settings, another teacher or other extra "
                             "frames; use a new --out")
    fitted = directory / "fit.json"
    fit_info = json.loads(fitted.read_text()) if fitted.exists() else None
    if settings.prior_strength is None and fit_info and fit_info.get("prior", PRIOR_CHOSEN) != PRIOR_CHOSEN:
        raise SurrogateError(f"{directory} was fitted at a fixed prior strength; choosing it on the validation split "
                             "needs the design rows again: use a new --out")
    if not recorded.exists():
        recorded.write_text(json.dumps(wanted, indent=1))
    sample(directory, teacher, settings, progress)
    approach(directory, teacher, settings, progress)
    atoms(directory, teacher, settings, progress)
    select(directory, settings, progress)
    neb(directory, teacher, settings, progress)
    mep_neighbourhood(directory, teacher, settings, progress)
    model_path = directory / "model.npz"
    if model_path.exists() and settings.prior_strength not in (None, fit_info["lambda_over_scale"]):
        info = refit_ace(model_path, fit_info, settings.prior_strength, progress)
        for stale in ("errors.json", "report.md"):
            (directory / stale).unlink(missing_ok=True)
        fitted.write_text(json.dumps(info, indent=1))
        recorded.write_text(json.dumps(wanted, indent=1))
    if not model_path.exists():
        frames = load_frames(directory)
        with np.load(directory / "selection.npz") as z:
            train = pick(frames, z["train"])
        nebs = [load_neb(directory, f) for f in settings.facets]
        train += [a for n in nebs for a in pick([n], np.arange(len(n.energies)))]
        if settings.mep_samples:
            for facet in settings.facets:
                samples, held = load_mep_samples(directory, facet)
                train += pick([samples], np.flatnonzero(~held))
        for pairs in load_frames(directory, APPROACH):
            kept = np.flatnonzero(~pairs.held_out)
            for index, structure in zip(kept, pick([pairs], kept)):
                structure.info["pair"] = f"{pairs.source[index]}:{index // 2}"  # rows 2k, 2k + 1: near and lifted
                train.append(structure)
        for placed in load_frames(directory, ATOMS):
            for structure in pick([placed], np.flatnonzero(~placed.held_out)):
                structure.info["validate"] = False  # a guard against wells where trajectories never go, not a measure
                structure.info["weight"] = settings.atom_weight
                train.append(structure)
        extra = load_frames(directory, EXTRA)
        train += pick(extra, np.arange(sum(len(f.energies) for f in extra)))
        train += gas_phase_h2(directory, teacher, settings.cutoff)
        info = fit_ace(train, settings, directory / "model.partial.npz", progress)
        fitted.write_text(json.dumps(info, indent=1))
        (directory / "model.partial.npz").replace(model_path)
    errors = directory / "errors.json"
    if errors.exists():
        return json.loads(errors.read_text())
    try:
        surrogate = load_ace(model_path)
    except ModelError as err:
        raise SurrogateError(f"{model_path}: {err}") from err
    return evaluate(directory, teacher, surrogate, settings, progress)


def _without_prior(record: dict) -> dict:
    """A build's recorded identity less the prior strength, which a finished build may change (see :func:`refit_ace`)."""
    return {**record, "settings": {k: v for k, v in record["settings"].items() if k != "prior_strength"}}
