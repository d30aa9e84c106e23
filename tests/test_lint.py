"""ruff (lint + format) and mypy, configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.lint


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "lib", "jobs", "tests", "benchmarks", "deploy", "scripts"],
        ["ruff", "format", "--check", "lib", "jobs", "tests", "benchmarks", "deploy", "scripts"],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_tool(cmd: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
