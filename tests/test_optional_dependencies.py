"""Every optional import names the extra that installs it when its package is missing (simulated: the package and
its submodules set to None in ``sys.modules``, as Python treats a module that cannot be imported)."""

import sys

import pytest
import torch

from pyscatter.cli.main import main

MACE = "the MACE models need the optional dependency mace-torch: pip install 'pyscatter[mace]'"
JULIA = "the nqcd engine needs the optional dependency juliacall: pip install -e '.[julia]' in a source checkout"
DASK = "Dask execution needs the optional dependency dask: pip install 'pyscatter[dask]'"
DISTRIBUTED = "Dask execution needs the optional dependency distributed: pip install 'pyscatter[dask]'"


DEPENDENTS = {"e3nn": ("mace",)}
"""Packages that import the key: already imported by an earlier test in the same process, they would not need it
again, so they are made unimportable too (as in an environment without the key, where they cannot import)."""


def _block(monkeypatch, package: str) -> None:
    """Make ``package``, the packages that need it, and every submodule already imported impossible to import."""
    for root in (package, *DEPENDENTS.get(package, ())):
        for name in [n for n in sys.modules if n == root or n.startswith(root + ".")] + [root]:
            monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory):
    """A torch file: the MACE backend's kind of model file."""
    path = tmp_path_factory.mktemp("torch") / "model.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    return path


def _load_torch_file(path):
    from pyscatter.models import load_model

    load_model(str(path))


def _random_mace(path):
    from pyscatter.models.mace import random_mace

    random_mace()


def _mace_calculator(path):
    from pyscatter.bench import mace_calculator

    mace_calculator(path, torch.float64)


def _julia(path):
    from pyscatter.models import julia_session

    julia_session._MODULE = None
    julia_session.julia()


def _dask_workers(path):
    from pyscatter.workflows.dask import check_executor_options

    check_executor_options(dask_workers=2)


@pytest.mark.parametrize("package, use, message", [
    ("mace", _load_torch_file, MACE), ("e3nn", _load_torch_file, MACE), ("mace", _random_mace, MACE),
    ("e3nn", _random_mace, MACE), ("mace", _mace_calculator, MACE), ("juliacall", _julia, JULIA),
    ("dask", _dask_workers, DASK), ("distributed", _dask_workers, DISTRIBUTED),
], ids=["load_model/mace", "load_model/e3nn", "random_mace/mace", "random_mace/e3nn", "mace_calculator/mace",
        "julia/juliacall", "dask executor/dask", "dask executor/distributed"])
def test_a_missing_optional_dependency_names_its_extra(package, use, message, torch_file, monkeypatch):
    _block(monkeypatch, package)
    with pytest.raises(ImportError) as raised:
        use(torch_file)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("package, options, message", [
    ("mace", ["--model", "{model}"], MACE),
    ("juliacall", ["--engine", "nqcd", "--workers", "1"], JULIA),
    ("distributed", ["--dask-workers", "2"], DISTRIBUTED),
], ids=["--model MACE", "--engine nqcd", "--dask-workers"])
def test_the_cli_says_it_in_one_line_with_exit_code_2(package, options, message, torch_file, monkeypatch, capsys,
                                                      tmp_path):
    _block(monkeypatch, package)
    argv = ["run", "--surface", "111", "--T", "300", "--v", "0", "--J", "0", "--trajectories", "1",
            "--out", str(tmp_path / "run"), *[o.format(model=torch_file) for o in options]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == f"pyscatter: error: {message}\n"
    assert not (tmp_path / "run").exists()
