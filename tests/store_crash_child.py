"""Child process of the crash tests in test_store.py (run as a script, then killed).

store_crash_child.py save STORE_ROOT PICKLE    save a pickled (result, pictures, preview_scale);
                                               DEEPFAKE_STORE_CRASH_AT picks where it dies
store_crash_child.py analyze STORE_ROOT MEDIA FRAMES
                                               analyse MEDIA with the real engine and store it,
                                               printing "progress STAGE DONE TOTAL" lines so the
                                               parent can kill it in the middle
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

from pipeline.store import Store


def main(argv: list[str]) -> int:
    mode, root = argv[0], Path(argv[1])
    if mode == "save":
        result, pictures, preview_scale = pickle.loads(Path(argv[2]).read_bytes())
        Store(root).save(result, pictures, preview_scale)
        print("saved", flush=True)
        return 0
    if mode == "analyze":
        from pipeline.analyze import Engine
        from pipeline.service import AnalysisRequest, AnalysisService

        service = AnalysisService(Engine())
        request = AnalysisRequest(frames=int(argv[3]), aggregation=service.detector.spec.aggregation)
        service.analyze(
            Path(argv[2]),
            request,
            Store(root),
            lambda stage, done, total: print(f"progress {stage} {done} {total}", flush=True),
        )
        print("saved", flush=True)
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
