"""Stop requests from the scheduler: SIGTERM / SIGUSR1 set a flag that training polls each step."""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["StopFlag"]


class StopFlag:
    """Context manager that turns SIGTERM and SIGUSR1 into ``flag.requested = True``.

    The previous handlers are restored on exit. Outside the main thread (where Python cannot
    install handlers) it does nothing, and ``requested`` stays False unless set by hand.
    """

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
