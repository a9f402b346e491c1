"""Running `python -m pipeline ...` as a user does: a fresh process, from the repository root."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline.config import REPO_ROOT

CLI_TIMEOUT_S = 600
"""A hang (a FIFO opened for reading, a stuck server) fails the test instead of blocking it."""


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run the command line with `args`; `env` adds variables to this process's environment."""
    return run_python("-m", "pipeline", *args, env=env, timeout=timeout)


def run_python(
    *args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run Python with `args` in a fresh process from the repository root, as `run_cli` does."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        cwd=REPO_ROOT,
        timeout=timeout,
    )
