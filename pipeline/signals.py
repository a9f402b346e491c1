"""Ctrl-C and `kill`: how a long command stops without losing what it did."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopSignals:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM, as a batch system or `docker stop` sends) stop a
    command once, cleanly.

    Installed, each raises KeyboardInterrupt, so the command stops where it is and keeps what it
    finished (a scan marks its job interrupted). Once it is saving what it did (`saving`),
    further ones are ignored: a person who presses Ctrl-C again and again must not cut the
    saving short (a scan's job left 'running', no JSON, a traceback from Ray's exit hook).
    Until then each raises again, so one lost in library code never leaves the command
    unstoppable. A signal the program was started with ignored (`nohup`) stays ignored. Only
    the main thread can set a handler; elsewhere (a page's thread) this does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.saving = False
        self.stopped = False
        """Whether a stop was raised."""
        self._deferring = False
        self._deferred = False
        self._previous: dict[int, Any] = {}

    def _handle(self, _signum: int, _frame: Any) -> None:
        if self.saving:
            return
        if self._deferring:
            self._deferred = True
            return
        self.stopped = True
        raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """While it lasts, a stop is only noted; it is raised as it ends. For work that must not
        be cut off half-way (Ray left half started crashes as the program exits)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._deferred and not self.saving:
            self._deferred = False
            self.stopped = True
            raise KeyboardInterrupt

    def install(self) -> None:
        """Take both signals."""
        if threading.current_thread() is not threading.main_thread():
            return
        for number in self.SIGNALS:
            current = signal.getsignal(number)
            if current == signal.SIG_IGN or current == self._handle:
                continue
            self._previous.setdefault(number, current)
            signal.signal(number, self._handle)

    def ignore(self) -> None:
        """Ignore the signals taken, from now on: for a program about to end (Python puts a
        handler back to its default as it exits, so a press then would still kill it)."""
        for number in self._previous:
            signal.signal(number, signal.SIG_IGN)

    def restore(self) -> None:
        """Give both signals back to the handlers they had before `install`."""
        for number, previous in self._previous.items():
            # None: a handler set outside Python, which cannot be put back from it.
            signal.signal(number, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
