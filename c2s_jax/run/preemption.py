"""SIGTERM, which Cloud TPU sends before preempting a VM, as a flag a run loop checks after
each step, so that it saves and returns cleanly."""

import signal


class Preemption:
    """Turns SIGTERM into `requested`; `restore()` puts the previous handler back."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)
