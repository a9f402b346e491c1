"""The walkthrough notebook runs from top to bottom with the shipped models."""

from __future__ import annotations

import signal
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline.config import REPO_ROOT


@pytest.mark.notebook
def test_walkthrough_notebook_runs_headless(shared_data: Path, models_dir: Path) -> None:
    path = REPO_ROOT / "notebooks" / "walkthrough.ipynb"
    notebook = nbformat.read(path, as_version=4)
    # nbclient watches Ctrl-C and SIGTERM through asyncio while it runs, and asyncio, letting go,
    # sets them to Python's defaults rather than to what they were: later tests in this process
    # must find them as the process started.
    signals = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    finally:
        for number, handler in signals.items():
            signal.signal(number, handler)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # Grad-CAM grid, t-SNE, timeline
    text = "".join(o.get("text", "") for o in outputs)
    assert "ensemble" in text and "AUC" in text  # the evaluation table was printed
