"""Child process of the crash tests in test_store.py (run as a script, then killed).

store_crash_child.py save STORE_ROOT PICKLE POINT
                                               save a pickled (result, pictures, preview_scale)
                                               and die by SIGKILL at POINT of the save
                                               (`CRASH_POINTS`): like a power cut of the process
store_crash_child.py analyze STORE_ROOT MEDIA FRAMES
                                               analyse MEDIA with the real engine and store it,
                                               printing "progress STAGE DONE TOTAL" lines so the
                                               parent can kill it in the middle
store_crash_child.py save-on-go STORE_ROOT PICKLE
store_crash_child.py delete-on-go STORE_ROOT ID
                                               open the store, print "ready", wait for a line on
                                               stdin, then save (print "saved ID") or delete
                                               (print "deleted"): writers started at one moment

The history's database is the one `DEEPFAKE_DATABASE_URL` names (SQLite in STORE_ROOT if unset).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from pathlib import Path

from pipeline.app.store import Store

CRASH_POINTS = ("files-written", "rows-inserted")
"""After the save wrote its pictures; after it inserted its rows, before the commit."""


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class CrashingStore(Store):
    """A store whose save is killed at one point (the crash happens here, in the test's code)."""

    crash_point = ""

    def _insert_rows(self, connection, result, pictures, preview_scale):
        if self.crash_point == "files-written":
            _die()
        analysis_id = super()._insert_rows(connection, result, pictures, preview_scale)
        if self.crash_point == "rows-inserted":
            _die()
        return analysis_id


def main(argv: list[str]) -> int:
    mode, root = argv[0], Path(argv[1])
    if mode == "save":
        result, pictures, preview_scale = pickle.loads(Path(argv[2]).read_bytes())
        store = CrashingStore(root)
        store.crash_point = argv[3]
        store.save(result, pictures, preview_scale)
        print("saved", flush=True)
        return 0
    if mode in ("save-on-go", "delete-on-go"):
        store = Store(root, clean=False)  # the parent cleaned it; a cleanup would serialise the start
        print("ready", flush=True)
        sys.stdin.readline()
        if mode == "delete-on-go":
            store.delete(int(argv[2]))
            print("deleted", flush=True)
        else:
            result, pictures, preview_scale = pickle.loads(Path(argv[2]).read_bytes())
            print(f"saved {store.save(result, pictures, preview_scale).id}", flush=True)
        return 0
    if mode == "analyze":
        from pipeline.app.service import AnalysisRequest, AnalysisService
        from pipeline.engine.analyze import Engine

        service = AnalysisService(Engine())
        request = AnalysisRequest(frames=int(argv[3]), aggregation=service.ensemble.spec.aggregation)
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
