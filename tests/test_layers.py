"""The pipeline's layers (pyproject.toml, [tool.importlinter]) hold: no module imports from a layer above its own."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is a dev dependency: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_layers_contract():
    # In a subprocess on this tree's src/: lint_imports puts the working directory on sys.path and reconfigures
    # logging, and an installed kidneyct elsewhere must not be the one analysed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 1 kept, 0 broken." in run.stdout
