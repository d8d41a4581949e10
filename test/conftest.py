"""Shared fixtures: a tiny copy of the mini recipe, prepared once per test session.

``mini_recipe`` runs stages 0-5 of ``egs/mini_soup`` with ``--tiny true`` (about 20 s) in a temp
dir. Tests that only read its data (training, decoding) share it; tests that change files copy
what they need first (``copy_prepared``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def copy_recipe(tmp: Path) -> Path:
    """A copy of the mini recipe (scripts and configs only) under ``tmp/egs/mini_soup``."""
    egs = tmp / "egs"
    egs.mkdir()
    shutil.copytree(REPO / "egs" / "TEMPLATE", egs / "TEMPLATE")
    shutil.copytree(REPO / "egs" / "mini_soup", egs / "mini_soup", symlinks=True,
                    ignore=shutil.ignore_patterns("corpus", "data", "dump", "exp"))
    shutil.copytree(REPO / "egs" / "covost2" / "local", egs / "covost2" / "local")
    (tmp / "utils").symlink_to(REPO / "utils")
    return egs / "mini_soup"


def recipe_env() -> dict[str, str]:
    """Environment for running recipe scripts and osoup commands from a copied recipe."""
    return dict(os.environ, OSOUP_ROOT=str(REPO), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def run_recipe(recipe: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``bash run.sh ARGS`` in ``recipe``; a failure shows the end of its stderr."""
    proc = subprocess.run(["bash", "run.sh", *args], cwd=recipe, env=recipe_env(), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}")
    return proc


def copy_prepared(src: Path, dst: Path) -> Path:
    """A private copy of a prepared recipe's data/ and dump/ (feature paths in the scp files are
    relative to the recipe dir, so the copy is self-contained)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("data", "dump"):
        shutil.copytree(src / name, dst / name, symlinks=True)
    return dst


def train_cmd(*args: str) -> list[str]:
    """``python -m osoup.bin.train`` with the given options."""
    return [PYTHON, "-m", "osoup.bin.train", *args]


@pytest.fixture(scope="session")
def mini_recipe(tmp_path_factory) -> Path:
    """The tiny mini recipe after stages 0-5 (shared: do not modify its data)."""
    recipe = copy_recipe(tmp_path_factory.mktemp("mini"))
    run_recipe(recipe, "--tiny", "true", "--stop-stage", "5")
    return recipe
