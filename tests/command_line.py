"""Running `python -m pipeline ...` as a user does: a fresh process, from the repository root."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import IO

import pytest

from pipeline.config import REPO_ROOT

CLI_TIMEOUT_S = 600
"""A hang (a FIFO opened for reading, a stuck server) fails the test instead of blocking it."""


def _environment(env: dict[str, str] | None, unset: tuple[str, ...] = ()) -> dict[str, str]:
    """This process's environment with the repository on the path, `env` added, `unset` taken out."""
    merged = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return {name: value for name, value in merged.items() if name not in unset}


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
        env=_environment(env),
        cwd=REPO_ROOT,
        timeout=timeout,
    )


def start_cli(*args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """Start the command line with `args` as a terminal does, without waiting: its own process
    group, Ctrl-C at its default, stdout and stderr piped as text. `env` adds variables to this
    process's environment, `unset` takes them out."""
    # The tests may run in the background (`nohup make test &`), where SIGINT is ignored and every
    # child would inherit that; a caught signal, unlike an ignored one, is back at its default in
    # the new program.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=REPO_ROOT,
            env=_environment({"PYTHONUNBUFFERED": "1", **(env or {})}, unset),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, as a terminal gives a command
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def first_stdout_line(process: subprocess.Popen[str], deadline_s: float) -> str:
    """The first line `process` prints; the test fails if none comes in `deadline_s`."""
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout=deadline_s):
            pytest.fail(f"no result line in {deadline_s:.0f} s")
        return process.stdout.readline()
    finally:
        selector.close()


def read_until(stream: IO[str], text: str, deadline_s: float) -> str:
    """What `stream` gives until `text` appears in it (a progress bar's count, say), read from
    its file descriptor as it comes; the test fails if it has not in `deadline_s`."""
    seen = b""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        while text.encode() not in seen:
            if not selector.select(timeout=deadline_s):
                pytest.fail(f"no {text!r} in {deadline_s:.0f} s; read: {seen.decode(errors='replace')[-500:]}")
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                pytest.fail(f"the stream ended before {text!r}; read: {seen.decode(errors='replace')[-500:]}")
            seen += chunk
    finally:
        selector.close()
    return seen.decode(errors="replace")


def terminate_after(
    process: subprocess.Popen[str], read_first: Callable[[subprocess.Popen[str]], str]
) -> tuple[str, str, str]:
    """Wait for what `read_first` reads from `process`, send it SIGTERM (`kill`), and collect the
    rest: (what was read first, stdout, stderr). A process still running after all (a failed
    test) is killed with its group."""
    try:
        first = read_first(process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return first, stdout, stderr
