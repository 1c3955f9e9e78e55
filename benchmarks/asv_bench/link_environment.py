"""asv's install step, offline: make the benchmarked commit's checkout (``argv[1]``) and the dependencies of
the Python environment that runs asv importable in asv's fresh virtualenv, through a ``.pth`` file.

The dependencies (torch, numba, ace-jax, ...) are not installed again: their site-packages directory is
taken from ``ASV_DEPENDENCIES`` or, by default, from the environment of the ``asv`` command on PATH.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path


def dependencies() -> str:
    if "ASV_DEPENDENCIES" in os.environ:
        return os.environ["ASV_DEPENDENCIES"]
    python = Path(shutil.which("asv")).resolve().parent / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.check_output([str(python), "-c", query], text=True).strip()


def main() -> None:
    checkout = Path(sys.argv[1]).resolve()
    target = Path(site.getsitepackages()[0]) / "asv_pyscatter.pth"
    target.write_text(f"{checkout}\n{dependencies()}\n")
    print(f"{target}: {checkout}, {dependencies()} ({sys.version.split()[0]})")


if __name__ == "__main__":
    main()
