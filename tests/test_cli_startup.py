"""The command line starts without torch, ase or jax: parsing (``--help``, argparse errors) needs none of them."""

import subprocess
import sys
from pathlib import Path

import pyscatter

ROOT = Path(__file__).resolve().parents[1]
PYSCATTER = [sys.executable, "-c", "import sys; from pyscatter.cli import main; sys.exit(main())"]
"""What the ``pyscatter`` console script runs."""
HEAVY = ("torch", "ase", "jax", "scipy", "numba", "pyscatter.models.base")


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_building_the_parser_and_asking_for_help_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from pyscatter.cli.main import _parser\n"
        "parser = _parser()\n"
        "for argv in (['--help'], ['run', '--help'], ['surrogate', 'build', '--help'], ['bench', 'force-call', '--help'],"
        " ['surrogate', 'validate', '--help'], ['run', '--surface', '111']):\n"
        "    try:\n"
        "        parser.parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version():
    done = subprocess.run([*PYSCATTER, "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0
    assert done.stdout == f"pyscatter {pyscatter.__version__}\n"


def test_bench_help_shows_the_default_batch_sizes():
    from pyscatter.bench import BATCH_SIZES
    from pyscatter.cli.models import BATCH_SIZES_HELP

    assert BATCH_SIZES_HELP == " ".join(map(str, BATCH_SIZES))
