"""How long a fresh dashboard process takes to draw its first page (Analyze, with its uploader),
and to have the models loaded behind it, in new processes one after another.

    python -m benchmarks.first_page            # 3 processes
    python -m benchmarks.first_page --runs 5

Each run is a new Python process that drives `app.py` with Streamlit's AppTest (the page's own
script, no browser) against an empty history in a temporary folder. Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from pipeline.config import DATA_HOME_ENV, REPO_ROOT

_ONE_RUN = """
import json, threading, time
start = time.perf_counter()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(APP, default_timeout=300).run()
drawn = time.perf_counter() - start
assert not at.exception and at.get("file_uploader"), [e.value for e in at.exception]
from pipeline.app.service import LOADER_THREAD
(loader,) = [t for t in threading.enumerate() if t.name == LOADER_THREAD]
loading = loader.is_alive()
loader.join()
print(json.dumps({"drawn_s": drawn, "loading_when_drawn": loading, "loaded_s": time.perf_counter() - start}))
"""


def one_run() -> dict[str, float]:
    """One fresh process: seconds to the first page and to the models loaded."""
    with tempfile.TemporaryDirectory(prefix="bench-first-page-") as home:
        script = f"APP = {str(REPO_ROOT / 'app.py')!r}\n" + _ONE_RUN
        run = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env={**os.environ, DATA_HOME_ENV: home, "PYTHONPATH": str(REPO_ROOT)},
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    for run in runs:
        print(
            f"first page drawn {run['drawn_s']:.2f} s (models still loading: {run['loading_when_drawn']}), "
            f"models loaded {run['loaded_s']:.1f} s"
        )
    print(
        f"median of {len(runs)}: first page {statistics.median(r['drawn_s'] for r in runs):.2f} s, "
        f"models loaded {statistics.median(r['loaded_s'] for r in runs):.1f} s"
    )


if __name__ == "__main__":
    main()
