"""Graceful stop on SIGTERM / SIGINT: note the signal, let the loop save at the next step boundary.

A handler cannot safely checkpoint by itself (it interrupts the step at an arbitrary point, with
buffers possibly donated), so it only records the request. A second Ctrl-C restores the default
handler's effect: the process stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType


class StopSignal:
    """Context manager: while active, SIGTERM and SIGINT set `requested` to the signal number."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user wants out now
        self.requested = signum
        name = signal.Signals(signum).name
        print(
            f"\n{name} received: saving a checkpoint after this step, then exiting"
            + (" (Ctrl-C again to quit at once)" if signum == signal.SIGINT else ""),
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopSignal:
        # Python only allows handlers in the main thread (e.g. not inside some notebook runners).
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
